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
 *
 * The instance's header and map live in _volume_record.ts, the write path over
 * them (in place, copy-up, zeroing) in _volume_writer.ts, what it knows of lost
 * writes in _write_losses.ts, the changes of its record besides writes (resize,
 * rollback, flatten, limits, freeze, release, deletion) in _record_changes.ts;
 * this file checks and locks.
 */
import { assert } from "./assert.ts";
import type { BlockMap } from "./block_map.ts";
import type { ByteRange, Engine } from "./engine.ts";
import { checkRange, type Extent, mapExtents, type MapReading, readMapRange } from "./map_io.ts";
import { SharedMutex } from "./_mutex.ts";
import type { VolumeHeader, VolumeLease, VolumeOrigin } from "./records.ts";
import { VolumeRecord } from "./_volume_record.ts";
import { VolumeWriter } from "./_volume_writer.ts";
import { WriteLosses } from "./_write_losses.ts";
import { type ChangeExtent, changeExtents } from "./changes.ts";
import { PagePins } from "./_page_pins.ts";
import type { VolumeQos } from "./qos.ts";
import { type ObjectReplacement, RecordChanges } from "./_record_changes.ts";

export type { ObjectReplacement };

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
  #record: VolumeRecord;
  #writer: VolumeWriter;
  #losses: WriteLosses;
  /** Changes of the record besides writes, and whether it was deleted or released. */
  #changes: RecordChanges;
  /**
   * Writes take it shared (they run concurrently: on a cluster each is a round
   * trip; a copy-up changes its own map entry alone, under that entry's lock in
   * VolumeWriter); everything that changes the map as a whole or needs quiet
   * (zeroing, flush, snapshot, release) takes it alone.
   */
  #mutex = new SharedMutex();
  /** How reads go to the engine: under `readView`, and its own objects not frozen. */
  #reading: MapReading;

  /**
   * `reader`: an instance nobody writes through (a loss recorded is the writer's
   * to report). `readView`: its reads go to the engine under this view (see
   * Engine.readObject): only for a volume nobody may write while it is used.
   * `orphaned`: its writer is gone without releasing it (Engine.readObject).
   */
  constructor(
    engine: Engine,
    header: VolumeHeader,
    map: BlockMap,
    version: number,
    options: { reader?: boolean; readView?: string; orphaned?: boolean; pins?: PagePins } = {},
  ) {
    this.engine = engine;
    // Alone (no store, so no collection), its pages need no pins that anyone reads.
    const pins = options.pins ?? new PagePins(() => {});
    this.#record = new VolumeRecord(engine, header, map, version, pins);
    this.#reading = {
      view: options.readView,
      owns: (name) => this.#record.owns(name),
      blockBytes: map.blockSize,
      orphaned: options.orphaned,
    };
    this.#writer = new VolumeWriter(engine, this.#record);
    this.#losses = new WriteLosses(engine, this.#record, this.#mutex, options.reader ?? false);
    this.#changes = new RecordChanges({
      engine,
      record: this.#record,
      writer: this.#writer,
      losses: this.#losses,
      mutex: this.#mutex,
    });
  }

  /** The volume's name. */
  get name(): string {
    return this.#record.header.name;
  }
  /** Size in bytes. */
  get sizeBytes(): number {
    return this.#record.map.sizeBytes;
  }
  /** Bytes per map entry. */
  get blockSize(): number {
    return this.#record.map.blockSize;
  }
  /** A copy of the header as stored. */
  get header(): VolumeHeader {
    return { ...this.#record.header };
  }
  /** The write lease as this instance loaded or took it (null outside a cluster). */
  get lease(): VolumeLease | null {
    return this.#record.header.lease ?? null;
  }
  /** The record version this instance last read or wrote. */
  get version(): number {
    return this.#record.version;
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
    return this.#changes.release();
  }

  /** Reads `range` into `into` (or a new buffer); never-written bytes are zeros. */
  async readAt(
    range: ByteRange,
    into: Uint8Array = new Uint8Array(range.length),
  ): Promise<Uint8Array> {
    this.#changes.checkOpen();
    this.#losses.check();
    checkRange(range, this.sizeBytes, `volume "${this.name}"`);
    await this.#losses.recovering(
      false,
      () => readMapRange(this.engine, this.#record.map, range, into, this.#reading),
    );
    return into;
  }

  /** Writes `data` at `offset`. */
  writeAt(offset: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    return this.#losses.recovering(false, () => this.#writeAt(offset, data, options));
  }

  async #writeAt(offset: number, data: Uint8Array, options: WriteOptions): Promise<void> {
    checkRange({ offset, length: data.length }, this.sizeBytes, `volume "${this.name}"`);
    await this.#mutex.runShared(async () => {
      this.#changes.checkWritable();
      if (!(await this.#writer.writeInPlace(offset, data))) await this.#writer.write(offset, data);
    });
    if (options.fua) await this.flush();
  }

  /**
   * Makes `range` read as zeros. Whole entries become zero entries (their owned
   * objects are deleted); partial ones are written with zeros.
   */
  async zeroAt(range: ByteRange, options: ZeroOptions = {}): Promise<void> {
    checkRange(range, this.sizeBytes, `volume "${this.name}"`);
    await this.#losses.recovering(false, () => this.#zeroAt(range, options));
    if (options.fua) await this.flush();
  }

  #zeroAt(range: ByteRange, options: ZeroOptions): Promise<void> {
    return this.#mutex.run(async () => {
      this.#changes.checkWritable();
      await this.#writer.zero(range, options);
    });
  }

  /**
   * True when zeroAt(range) would change only the map, writing no data: every
   * partial entry it touches is already zero, and holes are allowed.
   */
  zeroIsFast(range: ByteRange, options: { keepAllocated?: boolean } = {}): boolean {
    return this.#writer.zeroIsFast(range, options);
  }

  /** Discards `range`: afterwards it reads as zeros, and whole entries free their space. */
  trim(range: ByteRange, options: WriteOptions = {}): Promise<void> {
    return this.zeroAt(range, options);
  }

  /** Makes every write that resolved before this call durable. */
  flush(): Promise<void> {
    return this.#losses.recovering(true, () =>
      this.#mutex.run(async () => {
        this.#changes.checkOpen();
        // Released: everything acknowledged was made durable by release().
        if (this.#changes.released) return;
        // Fails when writes were lost, reporting them; again while a loss was noted at one of
        // its awaits (by an operation outside the lock), before anything is persisted (seed
        // 9200852, --boot-reads).
        do await this.#losses.flush(); while (this.#losses.pending);
        if (this.#record.dirty) await this.#record.persist();
      }));
  }

  /**
   * Grows the volume to `sizeBytes` (new bytes read as zeros), or with `force`
   * shrinks it (what lies past the new end is discarded), durably: it flushes.
   * NBD connections see the new size when they connect again.
   */
  resize(sizeBytes: number, options: { force?: boolean } = {}): Promise<void> {
    return this.#changes.resize(sizeBytes, options);
  }

  /**
   * Makes `map` the volume's, its size included (a rollback to the snapshot
   * whose map it is), durably, and returns the map it had. Later writes copy
   * up what `map` names (VolumeRecord.replaceMap). Connections open on it read
   * the new map's bytes from their next request on.
   */
  replaceMap(map: BlockMap): Promise<BlockMap> {
    assert(map.blockSize === this.blockSize);
    return this.#changes.replaceMap(map);
  }

  /**
   * Points every entry of `changes` that still names its object at the entry
   * given instead (a flatten: the same bytes as a content block, or a zero
   * entry), gives the header `origin`, durably; returns how many changed.
   */
  replaceObjects(changes: readonly ObjectReplacement[], origin: VolumeOrigin): Promise<number> {
    return this.#changes.replaceObjects(changes, origin);
  }

  /** The I/O limits its record names (empty: none). */
  get qos(): VolumeQos {
    return { ...this.#record.header.qos };
  }

  /**
   * Changes the I/O limits in the record to what `change` makes of the current
   * ones (checked by checkQos), durably: like a resize, it flushes first, so
   * that the record it writes names only data made durable.
   */
  changeQos(change: (current: VolumeQos) => VolumeQos): Promise<void> {
    return this.#changes.changeQos(change);
  }

  /** Which parts of `range` are known zeros (never written or discarded). */
  extents(range: ByteRange): Extent[] {
    checkRange(range, this.sizeBytes, `volume "${this.name}"`);
    return mapExtents(this.#record.map, range);
  }

  /** Which parts of `range` changed since `base`, the map of one of its snapshots (changes.ts). */
  changedExtents(base: BlockMap, range: ByteRange): ChangeExtent[] {
    checkRange(range, this.sizeBytes, `volume "${this.name}"`);
    return changeExtents(base, this.#record.map, range);
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
    return this.#changes.freeze(keep);
  }

  /** A copy of the current map (GC marks it; tests inspect it). */
  mapSnapshot(): BlockMap {
    return this.#record.map.clone();
  }

  /** True when `name` is an object this volume may write in place. */
  owns(name: string): boolean {
    return this.#record.owns(name);
  }

  /** Deletes the volume's record; later calls on this instance throw NotFoundError. */
  delete(): Promise<void> {
    return this.#changes.delete();
  }
}
