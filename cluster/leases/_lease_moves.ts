/**
 * Moves of the write leases, one at a time per volume: taking a lease to this
 * node or breaking it (the steps in leases.ts's module doc, with the holder's
 * release and the fencing overlapped with the compare-and-set of the record,
 * tried again when another node moved the lease meanwhile), and giving one up
 * when the node taking it asks.
 */
import {
  type Clock,
  LeaseLostError,
  NotFoundError,
  type Store,
  VersionMismatchError,
} from "../../core/mod.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import {
  decodeRecordHeader,
  recordKey,
  type VolumeHeader,
  withRecordHeader,
} from "../../core/records.ts";
import type { Register } from "../meta/mod.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import type { HeldLeases } from "./_held_leases.ts";
import type { HolderReads } from "./_holder_reads.ts";
import type { LeaseMessages } from "./_lease_messages.ts";
import type { LeaseCounters } from "./leases.ts";
import { logger } from "../../log/mod.ts";

const log = logger("leases");

/** Tries to move a lease when other nodes race for it. */
const moveAttemptsMax = 16;

/** The lease changed between reading the record and taking it: read again. */
class LeaseMovedError extends Error {
  override name = "LeaseMovedError";
}

/** What {@linkcode LeaseMoves} needs of its node. */
export interface LeaseMovesOptions {
  store: () => Store;
  engine: ClusterEngine;
  clock: Clock;
  messages: LeaseMessages;
  reads: HolderReads;
  leases: HeldLeases;
  counters: LeaseCounters;
}

/** The lease moves of one node; see the module doc. */
export class LeaseMoves {
  #options: LeaseMovesOptions;
  #engine: ClusterEngine;
  #locks = new KeyedMutex();
  /** Volumes whose lease a move (under #locks) is changing now. */
  #moving = new Set<string>();

  constructor(options: LeaseMovesOptions) {
    this.#options = options;
    this.#engine = options.engine;
  }

  get #store(): Store {
    return this.#options.store();
  }

  get #clock(): Clock {
    return this.#options.clock;
  }

  get #messages(): LeaseMessages {
    return this.#options.messages;
  }

  get #reads(): HolderReads {
    return this.#options.reads;
  }

  get #leases(): HeldLeases {
    return this.#options.leases;
  }

  /**
   * Takes the write lease of `name` to this node, moving it from its holder.
   * A move under way is waited for even once this node holds the lease: it
   * holds it before the nodes that kept a reader of the volume dropped it, and
   * nothing may be written until they did (seed 800840 with joins, leaves and
   * replacements: a second write went through while the move waited for a
   * reader it could not tell, and that reader served the volume without it).
   */
  acquire(name: string): Promise<void> {
    if (this.#leases.has(name) && !this.#moving.has(name)) return Promise.resolve();
    return this.#locks.run(name, async () => {
      if (this.#leases.has(name)) return;
      const started = this.#clock.now();
      await this.#moveLocked(name, this.#engine.selfId);
      this.#options.counters.acquired++;
      this.#options.counters.lastMoveMs = this.#clock.now() - started;
    });
  }

  /** Breaks the lease of `name`: nobody holds it afterwards (LeaseManager.breakLease). */
  breakLease(name: string): Promise<void> {
    return this.#locks.run(name, () => this.#moveLocked(name, null, { release: false }));
  }

  /** #move, with acquire()'s fast path closed until it ends. */
  async #moveLocked(name: string, to: string | null, options = { release: true }): Promise<void> {
    this.#moving.add(name);
    try {
      await this.#move(name, to, options);
    } finally {
      this.#moving.delete(name);
    }
  }

  /**
   * Gives up the lease of `name` if held at `epoch` or earlier; true when not
   * held after. `takenOver`: another node already took it (this node was
   * declared dead), so nothing here can be persisted any more: just let go.
   */
  release(name: string, epoch: number, takenOver = false): Promise<boolean> {
    return this.#locks.run(name, async () => {
      const held = this.#leases.get(name);
      if (held === undefined) return true;
      if (held.epoch > epoch) return false; // taken again since the caller looked
      // Connections open now are fenced for good, whether or not the release succeeds.
      this.#leases.countLoss(name);
      let forced = takenOver;
      try {
        // A loss of writes not reported yet goes with the record (the next holder's flush).
        if (!takenOver) await (await this.#store.openVolume(name)).release();
      } catch (error) {
        // Not durable yet (e.g. no metadata quorum): keep the lease, so that the
        // node taking it asks again, and what this node acknowledged is not lost.
        // A record that moved on means the lease was taken already: let it go.
        if (!(error instanceof VersionMismatchError)) throw error;
        forced = true;
      }
      this.#leases.released(name, held, forced);
      return true;
    });
  }

  /**
   * Gives up the lease of `name`, held here, to nobody, if `idle()` still says
   * nothing here uses it once writes are held back (_idle_release.ts): releases
   * the instance as for a move (everything acknowledged made durable, or a loss
   * marked in the record for the next holder to report; no write through it
   * after), then writes the lease free into the record at the next epoch. A
   * write that comes meanwhile waits (acquire's fast path is closed) and takes
   * the lease again after. True when released. A release that cannot be made
   * durable keeps the lease (it throws); so does a record that cannot be
   * written now (the next use opens the volume again from the record, which
   * still names this node); one that moved on means the lease was lost.
   */
  releaseIdle(name: string, idle: () => boolean): Promise<boolean> {
    return this.#locks.run(name, async () => {
      const held = this.#leases.get(name);
      if (held === undefined) return false;
      this.#moving.add(name);
      const epoch = held.epoch + 1;
      try {
        if (!idle()) return false;
        await (await this.#store.openVolume(name)).release();
        try {
          await this.#engine.proposer.change(recordKey.volume(name), (record) => {
            if (record.value === null) throw new LeaseMovedError();
            const header = decodeRecordHeader<VolumeHeader>(record.value);
            const lease = header.lease;
            if (lease?.holder !== this.#engine.selfId || lease.epoch !== held.epoch) {
              throw new LeaseMovedError();
            }
            return {
              version: record.version + 1,
              value: withRecordHeader(record.value, { ...header, lease: { holder: null, epoch } }),
            };
          });
        } catch (error) {
          if (error instanceof LeaseMovedError) {
            this.#leases.released(name, held, false);
            return false;
          }
          this.#store.dropVolume(name); // still held: reopened from the record at the next use
          throw error;
        }
      } finally {
        this.#moving.delete(name);
      }
      this.#leases.released(name, held, false);
      this.#options.counters.idleReleases++;
      // Nothing of the old epoch is in flight (every write ended, the instance released):
      // the fence only keeps storage's view of the epochs in step.
      this.#messages.fence(held.uid, epoch).catch(() => {});
      this.#messages.tellMembers(name, new Set());
      log.info("write lease of volume {volume} given up by {from} unused at epoch {epoch}", {
        volume: name,
        from: this.#engine.selfId,
        epoch,
      });
      return true;
    });
  }

  /**
   * Moves the lease of `name` to `to` (null: nobody holds it after); without
   * `release`, the holder is not asked to release (a break).
   */
  async #move(name: string, to: string | null, options = { release: true }): Promise<void> {
    for (let attempt = 0; attempt < moveAttemptsMax; attempt++) {
      const current = await this.#store.loadVolume(name);
      const lease = current.lease ?? { holder: null, epoch: 0 };
      const uid = current.header.uid;
      const epoch = lease.epoch + 1;
      // A holder that released writes no more: storage learns the new epoch from
      // the new holder's writes, and the fence goes out in the background. One that
      // did not (dead, cut off, or a break) may still write: fence storage first.
      const cooperative = lease.holder !== null && lease.holder !== this.#engine.selfId &&
          options.release
        ? this.#messages.askRelease(name, lease)
        : Promise.resolve(false);
      let takenOver = false;
      const ready = cooperative.then(async (released) => {
        takenOver = !released && options.release && lease.holder !== null &&
          lease.holder !== this.#engine.selfId;
        if (!released) await this.#messages.fence(uid, epoch);
        else this.#messages.fence(uid, epoch).catch(() => {});
        // The old holder raises no floor any more: read them while the record changes,
        // so the first write need not wait for it (data/_floor_cache.ts).
        if (to === this.#engine.selfId) this.#engine.objects.prefetchFloors(uid, epoch);
      });
      // The holder persisted its last map when it released: take the lease on that
      // record in one compare-and-set (its first round overlaps the release and the
      // fencing), and open the volume from what it wrote.
      let register: Register;
      let readers: string[] = [];
      try {
        register = await this.#engine.proposer.change(recordKey.volume(name), (record) => {
          if (record.value === null) {
            throw new NotFoundError(`Cannot move the lease of volume "${name}": it was deleted`);
          }
          const header = decodeRecordHeader<VolumeHeader>(record.value);
          if ((header.lease?.epoch ?? 0) !== lease.epoch) throw new LeaseMovedError();
          readers = header.lease?.readers ?? [];
          return {
            version: record.version + 1,
            value: withRecordHeader(record.value, { ...header, lease: { holder: to, epoch } }),
          };
        }, ready);
      } catch (error) {
        if (error instanceof LeaseMovedError) continue; // someone else moved it meanwhile
        throw error;
      }
      this.#store.dropVolume(name);
      if (to === this.#engine.selfId) {
        this.#store.adoptVolume(name, register.value!, register.version);
      }
      this.#engine.objects.forget(uid);
      this.#reads.forget(name);
      if (to === this.#engine.selfId) this.#leases.hold(name, epoch, uid);
      // Nodes that kept a reader of the free volume drop it before anything is written
      // (told and waited for below); the other members are told without waiting.
      const others = readers.filter((id) => id !== this.#engine.selfId);
      this.#messages.tellMembers(name, new Set(others));
      if (others.length > 0) await this.#messages.dropReaders(name, others, this.#reads.validMs);
      log.info("write lease of volume {volume} moved from {from} to {to} at epoch {epoch}", {
        volume: name,
        from: lease.holder,
        to,
        epoch,
        takenOver,
      });
      if (takenOver) this.#messages.tellOldHolder(name, lease).catch(() => {});
      return;
    }
    throw new LeaseLostError(
      `Cannot move the write lease of volume "${name}": other nodes kept moving it`,
    );
  }
}
