/**
 * A volume: a mutable map plus the objects it owns, with the byte-level API the
 * NBD server calls (`readAt`, `writeAt`, `zeroAt`, `trim`, `flush`).
 *
 * Copy-on-write: an entry that points at a shared block, or at an object of an
 * earlier generation (frozen by a snapshot), is copied up on its first write into
 * a new object of the current generation; later writes go in place. A flush makes
 * the objects durable first and the map after them, so a map that survives a
 * crash only names objects whose writes were flushed with it.
 *
 * When the engine reports that writes acknowledged since the last flush are
 * gone from every copy (WritesLostError: on a cluster, every replica holding
 * them restarted before a flush), the volume goes back to its last flushed map
 * and its next flush fails with that error, as a disk reports a lost write
 * cache; until then its reads and writes fail with it too, and it can neither
 * be released nor frozen as if nothing happened.
 */
import { assert } from "./assert.ts";
import { BlockMap, type MapEntry, objectName } from "./block_map.ts";
import type { ByteRange, Engine } from "./engine.ts";
import { LeaseLostError, NotFoundError, WritesLostError } from "./errors.ts";
import { checkRange, type Extent, mapExtents, readEntry, readMapRange, spansOf } from "./map_io.ts";
import { SharedMutex } from "./_mutex.ts";
import {
  decodeRecord,
  encodeRecord,
  recordKey,
  type VolumeHeader,
  type VolumeLease,
} from "./records.ts";

/** Options of the writing calls: `fua` makes the change durable before resolving. */
export interface WriteOptions {
  fua?: boolean;
}

/** Options of {@linkcode Volume.zeroAt}. */
export interface ZeroOptions extends WriteOptions {
  /** Keep the range allocated (NBD's NO_HOLE): write zeros instead of making holes. */
  keepAllocated?: boolean;
}

/** An open volume. Obtain one from the Store; one instance per volume per node. */
export class Volume {
  readonly engine: Engine;
  #header: VolumeHeader;
  #map: BlockMap;
  #version: number;
  #dirty = false;
  #deleted = false;
  /** Set once the write lease moved away: this instance never writes again. */
  #released = false;
  /** Unflushed writes were lost and the volume went back to its last flush; not reported yet. */
  #lost: WritesLostError | null = null;
  /** The last loss the volume went back from (so it goes back once per loss). */
  #lastLoss: WritesLostError | null = null;
  /**
   * Writes into objects the volume owns take it shared (they change no map entry
   * and run concurrently: on a cluster each is a round trip); everything that
   * changes the map or needs quiet (copy-up, zeroing, flush, snapshot) takes it
   * alone.
   */
  #mutex = new SharedMutex();
  #scratch: Uint8Array | null = null;
  #readView: string | undefined;
  /** Object names this volume writes in place start with this: `UID.GENERATION.` */
  #ownedPrefix: string;

  /**
   * `reader`: an instance nobody writes through (a loss recorded is the writer's
   * to report). `readView`: its reads go to the engine under this view (see
   * Engine.readObject): only for a volume nobody may write while it is used.
   */
  constructor(
    engine: Engine,
    header: VolumeHeader,
    map: BlockMap,
    version: number,
    options: { reader?: boolean; readView?: string } = {},
  ) {
    this.engine = engine;
    this.#readView = options.readView;
    this.#header = header;
    this.#map = map;
    this.#version = version;
    this.#ownedPrefix = `${header.uid}.${header.generation}.`;
    if (header.writesLost && !options.reader) {
      this.#lost = new WritesLostError(
        [],
        `Writes acknowledged since the last flush of volume "${header.name}" were lost ` +
          `before its write lease moved here`,
      );
    }
  }

  /** The volume's name. */
  get name(): string {
    return this.#header.name;
  }
  /** Size in bytes. */
  get sizeBytes(): number {
    return this.#map.sizeBytes;
  }
  /** Bytes per map entry. */
  get blockSize(): number {
    return this.#map.blockSize;
  }
  /** A copy of the header as stored. */
  get header(): VolumeHeader {
    return { ...this.#header };
  }
  /** The write lease as this instance loaded or took it (null outside a cluster). */
  get lease(): VolumeLease | null {
    return this.#header.lease ?? null;
  }
  /** The record version this instance last read or wrote. */
  get version(): number {
    return this.#version;
  }

  /**
   * Gives the write lease up: every write that resolved before is made durable,
   * then this instance refuses writes (LeaseLostError) for good. When that
   * fails, the instance stays as it was (its map not persisted), so that the
   * release can be tried again: giving up then would lose acknowledged writes.
   * When they were lost already (a loss no flush reported yet), it releases
   * the last flushed state and marks the record, so that the next holder's
   * first flush reports the loss.
   */
  release(): Promise<void> {
    return this.#recovering(false, () =>
      this.#mutex.run(async () => {
        if (this.#released || this.#deleted) return;
        if (this.#lost === null) {
          await this.engine.flush(this.#header.uid);
          if (this.#dirty) await this.#persist();
        } else if (!this.#header.writesLost) {
          // After a loss the map is the record's (the last flush): the next holder
          // is told to report the loss, as this instance would have.
          this.#header = { ...this.#header, writesLost: true };
          await this.#persist();
        }
        this.#released = true;
      }));
  }

  /** Reads `range` into `into` (or a new buffer); never-written bytes are zeros. */
  async readAt(
    range: ByteRange,
    into: Uint8Array = new Uint8Array(range.length),
  ): Promise<Uint8Array> {
    this.#checkOpen();
    this.#checkNotLost();
    checkRange(range, this.sizeBytes, `volume "${this.name}"`);
    await this.#recovering(
      false,
      () => readMapRange(this.engine, this.#map, range, into, this.#readView),
    );
    return into;
  }

  /** Writes `data` at `offset`. */
  writeAt(offset: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    return this.#recovering(false, () => this.#writeAt(offset, data, options));
  }

  async #writeAt(offset: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    checkRange({ offset, length: data.length }, this.sizeBytes, `volume "${this.name}"`);
    const spans = [...spansOf({ offset, length: data.length }, this.blockSize)];
    const wroteInPlace = await this.#mutex.runShared(async () => {
      this.#checkWritable();
      const names = spans.map((span) => {
        const entry = this.#map.get(span.index);
        return entry.kind === "object" && this.owns(entry.name) ? entry.name : null;
      });
      if (names.some((name) => name === null)) return false;
      await Promise.all(
        spans.map((span, i) =>
          this.engine.writeObject(
            names[i]!,
            span.offset,
            data.subarray(span.at, span.at + span.length),
            { existing: true },
          )
        ),
      );
      return true;
    });
    if (wroteInPlace) {
      if (options.fua) await this.flush();
      return;
    }
    await this.#mutex.run(async () => {
      this.#checkWritable();
      for (const span of spansOf({ offset, length: data.length }, this.blockSize)) {
        await this.#writeSpan(span, data.subarray(span.at, span.at + span.length));
      }
    });
    if (options.fua) await this.flush();
  }

  /**
   * Makes `range` read as zeros. Whole entries become zero entries (their owned
   * objects are deleted); partial ones are written with zeros.
   */
  async zeroAt(range: ByteRange, options: ZeroOptions = {}): Promise<void> {
    checkRange(range, this.sizeBytes, `volume "${this.name}"`);
    await this.#recovering(false, () => this.#zeroAt(range, options));
    if (options.fua) await this.flush();
  }

  #zeroAt(range: ByteRange, options: ZeroOptions): Promise<void> {
    return this.#mutex.run(async () => {
      this.#checkWritable();
      for (const span of spansOf(range, this.blockSize)) {
        if (options.keepAllocated) {
          await this.#writeSpan(span, zeros(span.length));
        } else if (this.#isWholeSpan(span)) {
          await this.#dropEntry(span.index);
        } else if (!this.#map.isZero(span.index)) {
          await this.#writeSpan(span, zeros(span.length));
        }
      }
    });
  }

  /**
   * True when zeroAt(range) would change only the map, writing no data: every
   * partial entry it touches is already zero, and holes are allowed.
   */
  zeroIsFast(range: ByteRange, options: { keepAllocated?: boolean } = {}): boolean {
    if (options.keepAllocated) return false;
    for (const span of spansOf(range, this.blockSize)) {
      if (!this.#isWholeSpan(span) && !this.#map.isZero(span.index)) return false;
    }
    return true;
  }

  #isWholeSpan(span: { index: number; offset: number; length: number }): boolean {
    return span.offset === 0 && span.length === this.#map.spanBytes(span.index);
  }

  /** Discards `range`: afterwards it reads as zeros, and whole entries free their space. */
  trim(range: ByteRange, options: WriteOptions = {}): Promise<void> {
    return this.zeroAt(range, options);
  }

  /** Makes every write that resolved before this call durable. */
  flush(): Promise<void> {
    return this.#recovering(true, () =>
      this.#mutex.run(async () => {
        this.#checkOpen();
        // Released: everything acknowledged was made durable by release().
        if (this.#released) return;
        let lost = this.#lost;
        try {
          // Flushed even when a loss is pending, so that one report covers every
          // object that lost writes, not the first one found.
          await this.engine.flush(this.#header.uid);
        } catch (error) {
          if (!(error instanceof WritesLostError)) throw error;
          await this.#revert(error, true);
          lost = lost === null
            ? error
            : new WritesLostError([...new Set([...lost.objects, ...error.objects])]);
        }
        if (lost !== null) {
          if (this.#header.writesLost) {
            this.#header = { ...this.#header, writesLost: undefined };
            await this.#persist();
          }
          this.#lost = null;
          this.#lastLoss = lost; // reported here: nothing to go back from again
          throw lost;
        }
        if (this.#dirty) await this.#persist();
      }));
  }

  /** Which parts of `range` are known zeros (never written or discarded). */
  extents(range: ByteRange): Extent[] {
    checkRange(range, this.sizeBytes, `volume "${this.name}"`);
    return mapExtents(this.#map, range);
  }

  /**
   * Freezes the current map and returns it: flushes, then bumps the generation
   * durably, so that every object the map names is copied up before it changes.
   * `keep` runs with the frozen map before any write can copy an entry up (a
   * snapshot writes its record there): until then the volume's record names
   * every object the frozen map does, so garbage collection, which reads one
   * record after the other, always finds them referenced by one of the two.
   */
  freeze(keep: (frozen: BlockMap) => Promise<void> = () => Promise.resolve()): Promise<BlockMap> {
    return this.#recovering(false, () => this.#freeze(keep));
  }

  #freeze(keep: (frozen: BlockMap) => Promise<void>): Promise<BlockMap> {
    return this.#mutex.run(async () => {
      this.#checkWritable();
      await this.engine.flush(this.#header.uid);
      const frozen = this.#map.clone();
      this.#header = { ...this.#header, generation: this.#header.generation + 1 };
      this.#ownedPrefix = `${this.#header.uid}.${this.#header.generation}.`;
      await this.#persist();
      await keep(frozen);
      return frozen;
    });
  }

  /** A copy of the current map (GC marks it; tests inspect it). */
  mapSnapshot(): BlockMap {
    return this.#map.clone();
  }

  /** True when `name` is an object this volume may write in place. */
  owns(name: string): boolean {
    return name.startsWith(this.#ownedPrefix);
  }

  /** Deletes the volume's record; later calls on this instance throw NotFoundError. */
  delete(): Promise<void> {
    return this.#mutex.run(async () => {
      this.#checkOpen();
      await this.engine.deleteMeta(recordKey.volume(this.name), this.#version);
      this.#deleted = true;
    });
  }

  async #writeSpan(span: { index: number; offset: number; length: number }, chunk: Uint8Array) {
    const entry = this.#map.get(span.index);
    if (entry.kind === "object" && this.owns(entry.name)) {
      return await this.engine.writeObject(entry.name, span.offset, chunk, { existing: true });
    }
    const name = objectName(this.#header.uid, this.#header.generation, span.index);
    const spanBytes = this.#map.spanBytes(span.index);
    if (entry.kind === "zero") {
      // A leftover of this name can only hold unflushed bytes from before a
      // crash, or bytes since trimmed: start from an empty, sparse object.
      await this.engine.writeObject(name, span.offset, chunk, { truncate: true });
    } else if (span.length === spanBytes) {
      await this.engine.writeObject(name, 0, chunk);
    } else {
      const whole = this.#scratchBuffer().subarray(0, spanBytes);
      await readEntry(this.engine, entry, { offset: 0, length: spanBytes }, whole);
      whole.set(chunk, span.offset);
      await this.engine.writeObject(name, 0, whole);
    }
    this.#setEntry(span.index, { kind: "object", name });
  }

  async #dropEntry(index: number): Promise<void> {
    const entry = this.#map.get(index);
    if (entry.kind === "zero") return;
    // A trimmed entry reads as zeros whether or not the map naming the object
    // survives a crash, so the object can go at once.
    if (entry.kind === "object" && this.owns(entry.name)) {
      await this.engine.deleteObject(entry.name);
    }
    this.#setEntry(index, { kind: "zero" });
  }

  #setEntry(index: number, entry: MapEntry): void {
    this.#map.set(index, entry);
    this.#dirty = true;
  }

  /**
   * Runs `op`; when it finds unflushed writes lost, goes back to the last flush
   * and fails with the loss (`reported`: this failure tells the writer, so the
   * next flush need not).
   */
  async #recovering<T>(reported: boolean, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (error) {
      if (!(error instanceof WritesLostError) || error === this.#lastLoss) throw error;
      await this.#mutex.run(() => this.#revert(error, reported));
      throw error;
    }
  }

  /** Takes the map back to the record's (the last flush), after the engine lost writes since. */
  async #revert(lost: WritesLostError, reported: boolean): Promise<void> {
    this.#lastLoss = lost;
    if (!reported) this.#lost = lost;
    const entry = await this.engine.getMeta(recordKey.volume(this.name));
    if (entry === null || entry.version !== this.#version) {
      throw new LeaseLostError(
        `Cannot go back to the last flush of volume "${this.name}": its record moved on`,
      );
    }
    const { header, map } = decodeRecord<VolumeHeader>(entry.value);
    this.#header = header;
    this.#map = map;
    this.#ownedPrefix = `${header.uid}.${header.generation}.`;
    this.#dirty = false;
  }

  async #persist(): Promise<void> {
    const record = encodeRecord(this.#header, this.#map);
    this.#version = await this.engine.putMeta(recordKey.volume(this.name), record, this.#version);
    this.#dirty = false;
  }

  #scratchBuffer(): Uint8Array {
    // Copy-up runs under the mutex, so one buffer per volume suffices.
    this.#scratch ??= new Uint8Array(this.blockSize);
    return this.#scratch;
  }

  #checkWritable(): void {
    this.#checkOpen();
    this.#checkNotLost();
    if (this.#released) {
      throw new LeaseLostError(
        `Cannot write volume "${this.name}": this node no longer holds its write lease`,
      );
    }
  }

  /**
   * Reads and writes fail while a loss is not reported yet: the writer must not
   * read its writes back as they were before them, or go on as if nothing
   * happened, until a flush has told it.
   */
  #checkNotLost(): void {
    if (this.#lost !== null) throw this.#lost;
  }

  #checkOpen(): void {
    if (this.#deleted) throw new NotFoundError(`Cannot use volume "${this.name}": it was deleted`);
  }
}

let zeroBuffer = new Uint8Array(0);

/** A read-only view of `length` zeros; never written. */
function zeros(length: number): Uint8Array {
  assert(length >= 0);
  if (zeroBuffer.length < length) zeroBuffer = new Uint8Array(length);
  return zeroBuffer.subarray(0, length);
}
