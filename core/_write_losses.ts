/**
 * What an open volume knows of lost writes (WritesLostError: writes
 * acknowledged since its last flush gone from every copy), and how it goes
 * back to its last flush and reports them, once per loss (see volume.ts).
 */
import type { Engine } from "./engine.ts";
import { WritesLostError } from "./errors.ts";
import type { SharedMutex } from "./_mutex.ts";
import type { VolumeRecord } from "./_volume_record.ts";

/** The losses of one Volume instance, over its record and under its lock. */
export class WriteLosses {
  readonly #engine: Engine;
  readonly #record: VolumeRecord;
  readonly #mutex: SharedMutex;
  /** Unflushed writes were lost and the volume went back to its last flush; not reported yet. */
  #lost: WritesLostError | null = null;
  /** The last loss the volume went back from (so it goes back once per loss). */
  #lastLoss: WritesLostError | null = null;
  /** A loss is noted and the map is still the lost writes' (goBack() under the lock). */
  #behind = false;

  /** `reader`: an instance nobody writes through (a loss recorded is the writer's to report). */
  constructor(engine: Engine, record: VolumeRecord, mutex: SharedMutex, reader: boolean) {
    this.#engine = engine;
    this.#record = record;
    this.#mutex = mutex;
    if (record.header.writesLost && !reader) {
      this.#lost = new WritesLostError(
        [],
        `Writes acknowledged since the last flush of volume "${record.header.name}" were lost ` +
          `before its write lease moved here`,
      );
    }
  }

  /** True while a loss is noted and the map is still the lost writes' (goBack() takes it back). */
  get behind(): boolean {
    return this.#behind;
  }

  /** True while a loss is not reported yet (the map is then the last flush's). */
  get unreported(): boolean {
    return this.#lost !== null;
  }

  /**
   * True when a loss was noted and the map has not gone back from it, or one is
   * not reported yet. Read right before a persist, after the last await under
   * the lock: an operation outside the lock (a release's or a snapshot's flush
   * that failed, a write) notes a loss at any await, and the map of the lost
   * writes must never be persisted (seeds 6010564, 9200852).
   */
  get pending(): boolean {
    return this.#behind || this.#lost !== null;
  }

  /**
   * When {@linkcode pending}, under the lock: the map goes back to the last
   * flush, and the caller fails with the loss rather than persist what it
   * changed (the going back undid it) or the map of the lost writes.
   */
  async settle(): Promise<void> {
    if (!this.pending) return;
    while (this.#behind) await this.goBack();
    throw this.#lost ?? this.#lastLoss ?? new WritesLostError([]);
  }

  /**
   * Reads and writes fail while a loss is not reported yet: the writer must not
   * read its writes back as they were before them, or go on as if nothing
   * happened, until a flush has told it.
   */
  check(): void {
    if (this.#lost !== null) throw this.#lost;
  }

  /**
   * Runs `op`; when it finds unflushed writes lost, goes back to the last flush
   * and fails with the loss (`reported`: this failure tells the writer, so the
   * next flush need not).
   */
  async recovering<T>(reported: boolean, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (error) {
      // Pages the operation stored are stored again before a record names them.
      this.#record.carryPins();
      if (!(error instanceof WritesLostError) || error === this.#lastLoss) throw error;
      // Known before the lock is free again: whatever takes it next (a flush, a
      // release) must see the loss and go back first, not persist the map of the
      // lost writes (data-path soak at 327a2ce, seed 52154 with --boot-reads: a
      // forwarded flush got the lock between a failed release and its going back,
      // and the record came to name an object whose only writes were lost).
      this.#note(error, reported);
      await this.#mutex.run(() => this.goBack());
      throw error;
    }
  }

  /**
   * Under the volume's lock, before anything that may persist its record: takes
   * the map back to the record's (the last flush) when a loss is noted and the
   * volume has not gone back from it yet.
   */
  async goBack(): Promise<void> {
    if (!this.#behind) return;
    await this.#record.reload();
    this.#behind = false;
  }

  /**
   * The engine flush of Volume.flush (under its lock): fails with every loss
   * not reported yet, this one's and earlier ones together, having cleared the
   * record's mark of a loss that came with the write lease.
   */
  async flush(): Promise<void> {
    await this.goBack();
    let lost = this.#lost;
    try {
      // Flushed even when a loss is pending, so that one report covers every
      // object that lost writes, not the first one found. The map's changed pages
      // go first, so that this one flush makes them durable too.
      if (this.#record.dirty) await this.#record.storePages();
      await this.#engine.flush(this.#record.header.uid);
    } catch (error) {
      if (!(error instanceof WritesLostError)) throw error;
      this.#note(error, true);
      await this.goBack();
      lost = lost === null ? error : mergedLosses(lost, error);
    }
    if (lost !== null) {
      if (this.#record.header.writesLost) {
        this.#record.setWritesLost(false);
        await this.#record.persist();
      }
      this.#lost = null;
      this.#lastLoss = lost; // reported here: nothing to go back from again
      throw lost;
    }
  }

  /** The engine lost writes since the last flush: the map must go back to the record's. */
  #note(lost: WritesLostError, reported: boolean): void {
    this.#lastLoss = lost;
    // Two operations may find one loss (a write, and a release that flushed first):
    // the report names every object either found.
    if (!reported) this.#lost = this.#lost === null ? lost : mergedLosses(this.#lost, lost);
    this.#behind = true;
  }
}

function mergedLosses(a: WritesLostError, b: WritesLostError): WritesLostError {
  return new WritesLostError([...new Set([...a.objects, ...b.objects])]);
}
