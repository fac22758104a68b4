/**
 * Reads of a volume at a node that does not hold its write lease on RADOS:
 * the last flushed state (the record and the objects it names), which is what
 * a migrating QEMU needs, since the source flushes before the destination
 * runs. A reader is kept per volume for the record version it was read at.
 */
import type { ByteRange, Store, Volume } from "../core/mod.ts";
import { recordKey } from "../core/records.ts";
import type { RadosEngine } from "./rados_engine.ts";

/** The readers of volumes held elsewhere (or by nobody), by volume name. */
export class FlushedReads {
  #store: () => Store;
  #engine: RadosEngine;
  /** The instance and the record version it was read at. */
  #readers = new Map<string, { version: number; volume: Promise<Volume> }>();

  constructor(store: () => Store, engine: RadosEngine) {
    this.#store = store;
    this.#engine = engine;
  }

  /**
   * Reads `range` of `name` as of the last flush: from the reader kept for
   * the record version last seen, while the version is read again at the
   * same time; a newer record means a new reader and a second read.
   */
  async read(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    const key = recordKey.volume(name);
    const known = this.#readers.get(name);
    if (known !== undefined) {
      const [version] = await Promise.all([
        this.#engine.metaVersion(key),
        known.volume.then((volume) => volume.readAt(range, into)),
      ]);
      if (version === known.version) return;
    }
    const volume = this.#store().loadVolume(name);
    const loaded = await volume;
    this.#readers.set(name, { version: loaded.version, volume });
    await loaded.readAt(range, into);
  }

  /** The lease of `name` moved: its reader is read again on the next read. */
  forget(name: string): void {
    this.#readers.delete(name);
  }
}
