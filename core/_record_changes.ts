/**
 * The changes of an open volume's record besides its writes: a resize, a
 * rollback's map, a flatten's replaced objects, new I/O limits, the freeze of
 * a snapshot, giving the write lease up, and the deletion. Each runs under the
 * volume's lock alone and makes the writes before it durable first, so that
 * the record it writes names only durable data. Here too is what those leave
 * of the instance: deleted (every call refused), or released (no more writes).
 * The Volume (volume.ts) says what each change means to its callers.
 */
import type { BlockMap, MapEntry } from "./block_map.ts";
import type { Engine } from "./engine.ts";
import { ConflictError, LeaseLostError, NotFoundError } from "./errors.ts";
import type { SharedMutex } from "./_mutex.ts";
import { recordKey, type VolumeOrigin } from "./records.ts";
import type { VolumeRecord } from "./_volume_record.ts";
import type { VolumeWriter } from "./_volume_writer.ts";
import type { WriteLosses } from "./_write_losses.ts";
import type { VolumeQos } from "./qos.ts";

/** One entry a flatten changes: entry `index`, while it still names object `name`, becomes `entry`. */
export interface ObjectReplacement {
  index: number;
  name: string;
  entry: MapEntry;
}

/** The parts of one Volume instance that {@linkcode RecordChanges} works with. */
export interface RecordChangeParts {
  engine: Engine;
  record: VolumeRecord;
  writer: VolumeWriter;
  losses: WriteLosses;
  /** The volume's lock (see Volume): every change here takes it alone. */
  mutex: SharedMutex;
}

/** The record changes and the state of one Volume instance; see the module doc. */
export class RecordChanges {
  readonly #parts: RecordChangeParts;
  #deleted = false;
  /** Set once the write lease moved away: this instance never writes again. */
  #released = false;

  constructor(parts: RecordChangeParts) {
    this.#parts = parts;
  }

  /** True once the write lease was given up here (release()). */
  get released(): boolean {
    return this.#released;
  }

  /** Refuses every call once the volume was deleted. */
  checkOpen(): void {
    if (this.#deleted) {
      throw new NotFoundError(`Cannot use volume "${this.#name}": it was deleted`);
    }
  }

  /** Refuses a write once deleted or released, or while a loss is not reported yet. */
  checkWritable(): void {
    this.checkOpen();
    this.#parts.losses.check();
    if (this.#released) {
      throw new LeaseLostError(
        `Cannot write volume "${this.#name}": this node no longer holds its write lease`,
      );
    }
  }

  /** Volume.release: made durable, or after a loss the last flush marked as such; then released. */
  release(): Promise<void> {
    const { engine, record, losses, mutex } = this.#parts;
    return losses.recovering(false, () =>
      mutex.run(async () => {
        if (this.#released || this.#deleted) return;
        await losses.goBack();
        if (!losses.unreported) {
          if (record.dirty) await record.storePages();
          await engine.flush(record.header.uid);
        }
        // An operation that found a loss outside the lock (a snapshot's flush) notes it at
        // any await, the one of the goBack() above included: the map goes back before
        // anything is persisted, and what follows up to persist() decides without awaiting
        // (seed 6010564 of the data-path soak with joins, leaves and replacements: a release
        // saw no loss in goBack(), a snapshot noted one before the release looked again,
        // and the record came to name the lost object with the loss marked).
        while (losses.behind) await losses.goBack();
        if (!losses.unreported) {
          if (record.dirty) await record.persist();
        } else if (!record.header.writesLost) {
          // After a loss the map is the record's (the last flush): the next holder
          // is told to report the loss, as this instance would have.
          record.setWritesLost(true);
          await record.persist();
        }
        this.#released = true;
      }));
  }

  /** Volume.resize: grows, or with `force` shrinks, the map. */
  resize(sizeBytes: number, options: { force?: boolean }): Promise<void> {
    return this.#change(async (record) => {
      if (sizeBytes < record.map.sizeBytes && options.force !== true) {
        throw new ConflictError(
          `Cannot shrink volume "${this.#name}" from ${record.map.sizeBytes} to ${sizeBytes} ` +
            `bytes: it would discard what lies past the new end (force to do it)`,
        );
      }
      await this.#parts.writer.resize(sizeBytes);
    });
  }

  /** Volume.replaceMap: `map` becomes the volume's; returns the map it had. */
  replaceMap(map: BlockMap): Promise<BlockMap> {
    return this.#change((record) => {
      const before = record.map.clone();
      record.replaceMap(map);
      return before;
    });
  }

  /** Volume.replaceObjects: the entries that still name their object change; how many did. */
  replaceObjects(changes: readonly ObjectReplacement[], origin: VolumeOrigin): Promise<number> {
    return this.#change((record) => {
      let replaced = 0;
      for (const { index, name, entry } of changes) {
        if (index >= record.map.count) continue; // shrunk since
        const now = record.map.get(index);
        if (now.kind !== "object" || now.name !== name) continue; // written since
        record.setEntry(index, entry);
        replaced++;
      }
      record.setOrigin(origin);
      return replaced;
    });
  }

  /** Volume.changeQos: the record's limits become what `change` makes of them. */
  changeQos(change: (current: VolumeQos) => VolumeQos): Promise<void> {
    const { record, losses, mutex } = this.#parts;
    return losses.recovering(true, () =>
      mutex.run(async () => {
        this.checkWritable();
        await losses.flush();
        if (losses.pending) await losses.settle();
        const before = record.header.qos ?? {};
        record.setQos(change({ ...before }));
        try {
          await record.persist();
        } catch (error) {
          record.setQos(before); // the record keeps the old limits: so does the instance
          throw error;
        }
      }));
  }

  /** Volume.freeze: flushes, starts the next generation, runs `keep`, returns the frozen map. */
  freeze(keep: (frozen: BlockMap) => Promise<void>): Promise<BlockMap> {
    const { engine, record, losses, mutex } = this.#parts;
    return losses.recovering(false, () =>
      mutex.run(async () => {
        this.checkWritable();
        await losses.goBack();
        if (record.dirty) await record.storePages();
        await engine.flush(record.header.uid);
        // A loss noted at an await above (a release's flush found it, outside the lock):
        // the snapshot would name the lost writes (seed 9200852 with --boot-reads).
        if (losses.pending) await losses.settle();
        const frozen = record.map.clone();
        record.nextGeneration();
        await record.persist();
        await keep(frozen);
        return frozen;
      }));
  }

  /** Volume.delete: the record goes; later calls on the instance throw NotFoundError. */
  delete(): Promise<void> {
    const { engine, record, mutex } = this.#parts;
    return mutex.run(async () => {
      this.checkOpen();
      await engine.deleteMeta(recordKey.volume(this.#name), record.version);
      this.#deleted = true;
    });
  }

  get #name(): string {
    return this.#parts.record.header.name;
  }

  /** Changes the record under the volume's lock alone, then flushes and persists it. */
  #change<T>(change: (record: VolumeRecord) => T | Promise<T>): Promise<T> {
    const { record, losses, mutex } = this.#parts;
    return losses.recovering(true, () =>
      mutex.run(async () => {
        this.checkWritable();
        await losses.goBack();
        const result = await change(record);
        await losses.flush();
        // A loss noted meanwhile: its going back undid the change (fail, not persist).
        if (losses.pending) await losses.settle();
        await record.persist();
        return result;
      }));
  }
}
