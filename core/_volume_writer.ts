/**
 * The write path of a volume over its map: writes in place into the objects it
 * owns, copy-up of entries it does not own yet, and zeroing. The Volume checks
 * and locks; this writes.
 */
import { assert } from "./assert.ts";
import { objectName } from "./block_map.ts";
import { KeyedMutex } from "./_mutex.ts";
import type { ByteRange, Engine } from "./engine.ts";
import { readEntry, type Span, spansOf } from "./map_io.ts";
import type { VolumeRecord } from "./_volume_record.ts";
import { openVolumes } from "../metrics/mod.ts";

/** Writes through the map of one {@linkcode VolumeRecord}. */
export class VolumeWriter {
  readonly #engine: Engine;
  readonly #record: VolumeRecord;
  /** One entry's copy-up at a time: the first writer of an entry copies it up, later ones wait. */
  readonly #entryLocks = new KeyedMutex();
  /** A block's worth of buffer for copy-ups, kept while none is in use. */
  #scratch: Uint8Array | null = null;

  constructor(engine: Engine, record: VolumeRecord) {
    this.#engine = engine;
    this.#record = record;
  }

  /**
   * Writes `data` at `offset` when every entry it touches is an object the
   * volume owns, changing no map entry (so writers may run concurrently);
   * false, having written nothing, when one needs a copy-up.
   */
  async writeInPlace(offset: number, data: Uint8Array): Promise<boolean> {
    const spans = [...spansOf({ offset, length: data.length }, this.#record.map.blockSize)];
    const names = spans.map((span) => {
      const entry = this.#record.map.get(span.index);
      return entry.kind === "object" && this.#record.owns(entry.name) ? entry.name : null;
    });
    if (names.some((name) => name === null)) return false;
    await Promise.all(
      spans.map((span, i) =>
        this.#engine.writeObject(
          names[i]!,
          span.offset,
          data.subarray(span.at, span.at + span.length),
          { existing: true, epoch: this.#epoch },
        )
      ),
    );
    return true;
  }

  /**
   * Writes `data` at `offset`, copying entries up as needed. Writers of other
   * entries may run meanwhile (under the volume's lock, shared): the copy-up of
   * one entry takes that entry's lock, and a writer that waited for it finds the
   * entry owned and writes in place.
   */
  async write(offset: number, data: Uint8Array): Promise<void> {
    for (const span of spansOf({ offset, length: data.length }, this.#record.map.blockSize)) {
      await this.#entryLocks.run(
        String(span.index),
        () => this.#writeSpan(span, data.subarray(span.at, span.at + span.length)),
      );
    }
  }

  /**
   * Makes `range` read as zeros. Whole entries become zero entries (their owned
   * objects are deleted); partial ones are written with zeros.
   */
  async zero(range: ByteRange, options: { keepAllocated?: boolean }): Promise<void> {
    for (const span of spansOf(range, this.#record.map.blockSize)) {
      if (options.keepAllocated) {
        await this.#writeSpan(span, zeros(span.length));
      } else if (this.#isWholeSpan(span)) {
        await this.#dropEntry(span.index);
      } else if (!this.#record.map.isZero(span.index)) {
        await this.#writeSpan(span, zeros(span.length));
      }
    }
  }

  /**
   * Gives the volume `sizeBytes` bytes. A shrink first makes what lies past the
   * new end read as zeros (owned objects of whole entries deleted, the rest of
   * the last entry written with zeros), so that growing again shows zeros there.
   */
  async resize(sizeBytes: number): Promise<void> {
    const map = this.#record.map;
    if (sizeBytes < map.sizeBytes) {
      await this.zero({ offset: sizeBytes, length: map.sizeBytes - sizeBytes }, {});
    }
    this.#record.resize(sizeBytes);
  }

  /** True when zero(range) would change only the map (see Volume.zeroIsFast). */
  zeroIsFast(range: ByteRange, options: { keepAllocated?: boolean }): boolean {
    if (options.keepAllocated) return false;
    for (const span of spansOf(range, this.#record.map.blockSize)) {
      if (!this.#isWholeSpan(span) && !this.#record.map.isZero(span.index)) return false;
    }
    return true;
  }

  #isWholeSpan(span: { index: number; offset: number; length: number }): boolean {
    return span.offset === 0 && span.length === this.#record.map.spanBytes(span.index);
  }

  /**
   * The write lease epoch this instance writes under (none on a single node):
   * the engine refuses its writes once its node writes the volume under another.
   */
  get #epoch(): number | undefined {
    return this.#record.header.lease?.epoch;
  }

  async #writeSpan(span: Span, chunk: Uint8Array) {
    const map = this.#record.map;
    const entry = map.get(span.index);
    if (entry.kind === "object" && this.#record.owns(entry.name)) {
      return await this.#engine.writeObject(entry.name, span.offset, chunk, {
        existing: true,
        epoch: this.#epoch,
      });
    }
    const { uid, generation } = this.#record.header;
    const name = objectName(uid, generation, span.index);
    const spanBytes = map.spanBytes(span.index);
    if (entry.kind === "zero") {
      // A leftover of this name can only hold unflushed bytes from before a
      // crash, or bytes since trimmed: start from an empty, sparse object.
      await this.#engine.writeObject(name, span.offset, chunk, {
        truncate: true,
        epoch: this.#epoch,
      });
    } else if (span.length === spanBytes) {
      await this.#engine.writeObject(name, 0, chunk, { epoch: this.#epoch });
      this.#countCopyUp();
    } else {
      const scratch = this.#scratch ?? new Uint8Array(map.blockSize);
      this.#scratch = null;
      try {
        const whole = scratch.subarray(0, spanBytes);
        await readEntry(this.#engine, entry, { offset: 0, length: spanBytes }, whole);
        whole.set(chunk, span.offset);
        await this.#engine.writeObject(name, 0, whole, { epoch: this.#epoch });
      } finally {
        this.#scratch = scratch;
      }
      this.#countCopyUp();
    }
    this.#record.setEntry(span.index, { kind: "object", name });
  }

  /** An entry the volume shared (a block, or an object it froze) is now its own. */
  #countCopyUp(): void {
    const stats = openVolumes.find(this.#record.header.name);
    if (stats !== undefined) stats.copyUps++;
  }

  async #dropEntry(index: number): Promise<void> {
    const entry = this.#record.map.get(index);
    if (entry.kind === "zero") return;
    // A trimmed entry reads as zeros whether or not the map naming the object
    // survives a crash, so the object can go at once.
    if (entry.kind === "object" && this.#record.owns(entry.name)) {
      await this.#engine.deleteObject(entry.name, { epoch: this.#epoch });
    }
    this.#record.setEntry(index, { kind: "zero" });
  }
}

let zeroBuffer = new Uint8Array(0);

/** A read-only view of `length` zeros; never written. */
function zeros(length: number): Uint8Array {
  assert(length >= 0);
  if (zeroBuffer.length < length) zeroBuffer = new Uint8Array(length);
  return zeroBuffer.subarray(0, length);
}
