/**
 * Write leases on RADOS: several Atoll nodes on one pool serve the same
 * volumes; at most one writes each. The lease lives in the volume's record
 * (`lease: {holder, epoch, client}`, `client` being the holder's RADOS client
 * address), so taking it is a compare-and-set of the record, as on the ring.
 *
 * Moving the lease here (the first write through this node, or an operator):
 * 1. the holder is asked to let go through RADOS watch/notify: every holder
 *    watches `lease.NAME` in the metadata namespace; a notification makes it
 *    fence the connections open there, flush, persist its map and write
 *    `{holder: null}` into the record, then acknowledge;
 * 2. a holder that does not answer within `releaseTimeoutMs` (dead, hung, cut
 *    off) is fenced by force: its client is blocklisted by the cluster, so the
 *    OSDs refuse everything it sends from then on (RBD's exclusive lock does
 *    the same), and this node waits `fenceSettleMs` for the OSDs to learn it;
 * 3. `{holder: self, epoch + 1, client: self}` goes into the record (CAS), and
 *    the volume is opened from it; every object write from now on carries the
 *    new epoch, which the engine checks in the same RADOS operation as the data.
 *
 * Reads through a node that does not hold the lease read the last flushed
 * state (the record and the objects it names), which is what a migrating
 * QEMU needs: the source flushes before the destination runs.
 *
 * Moving the lease in the record is _lease_records.ts; asking, answering and
 * fencing, _lease_handover.ts; the reads of the last flushed state,
 * _flushed_reads.ts.
 */
import type {
  ByteRange,
  LeaseLosses,
  Store,
  Volume,
  VolumeAccess,
  VolumeAuthority,
  VolumeHandle,
} from "../core/mod.ts";
import { ConflictError } from "../core/mod.ts";
import { KeyedMutex } from "../core/_mutex.ts";
import type { RadosEngine } from "./rados_engine.ts";
import { RadosVolumeHandle } from "./_rados_volume_handle.ts";
import { unwatchAsks, watchAsks } from "./_lease_handover.ts";
import { clearHolder, type MovedLease, moveLease, recordedHolder } from "./_lease_records.ts";
import { FlushedReads } from "./_flushed_reads.ts";
import { logger } from "../log/mod.ts";

const log = logger("leases");

/** Default time a holder has to let go when asked, before it is fenced by force. */
export const releaseTimeoutMsDefault = 10_000;
/** Default pause after blocklisting a holder, for every OSD to learn the new OSD map. */
export const fenceSettleMsDefault = 1_000;

/** A lease this node holds. */
interface Held {
  epoch: number;
  uid: string;
  /** The watch through which other nodes ask for the lease. */
  cookie: bigint;
  /** The instance opened from the record this node wrote when it took the lease. */
  volume: Volume;
}

/** Options of {@linkcode RadosLeases}. */
export interface RadosLeasesOptions {
  /** The store (built after the leases, since it takes their `access`). */
  store: () => Store;
  engine: RadosEngine;
  /** This node's stable id (what records name as holder). */
  selfId: string;
  releaseTimeoutMs?: number;
  fenceSettleMs?: number;
}

/** Counters an operator sees in /metrics. */
export interface RadosLeaseCounters {
  acquired: number;
  released: number;
  /** Leases taken from a holder that did not let go (blocklisted). */
  takeovers: number;
  /** Writes refused because the connection was open when the lease moved away. */
  fencedWrites: number;
}

/** The volumes' authority on RADOS: write leases by compare-and-set of the records. */
export class RadosLeases implements VolumeAuthority {
  readonly counters: RadosLeaseCounters = {
    acquired: 0,
    released: 0,
    takeovers: 0,
    fencedWrites: 0,
  };
  readonly selfId: string;
  #options: RadosLeasesOptions;
  #held = new Map<string, Held>();
  /** Volume uid → name, for the engine's fence. */
  #names = new Map<string, string>();
  /** Watch cookie → volume name. */
  #watches = new Map<bigint, string>();
  #losses = new Map<string, number>();
  /** Of those, the losses without a release (its unflushed writes may be gone). */
  #forced = new Map<string, number>();
  #locks = new KeyedMutex();
  /** Readers of volumes held elsewhere (_flushed_reads.ts). */
  #flushed: FlushedReads;

  /** The store's say on volume access: a write path takes the lease first. */
  readonly access: VolumeAccess = {
    acquire: async (name, purpose) => {
      if (purpose === "catalogue") await this.#refuseIfHeldElsewhere(name);
      await this.acquire(name);
    },
    isCurrent: (name) => this.#held.has(name),
    heldLease: (name) => {
      const held = this.#held.get(name);
      return held === undefined ? null : { holder: this.selfId, epoch: held.epoch };
    },
  };

  constructor(options: RadosLeasesOptions) {
    this.#options = options;
    this.selfId = options.selfId;
    this.#flushed = new FlushedReads(options.store, options.engine);
  }

  get #store(): Store {
    return this.#options.store();
  }

  get #engine(): RadosEngine {
    return this.#options.engine;
  }

  /** The epoch this node writes volume `uid` under; null when it holds no lease on it. */
  epochOf(uid: string): number | null {
    const name = this.#names.get(uid);
    return name === undefined ? null : this.#held.get(name)?.epoch ?? null;
  }

  /** True when this node holds the write lease of `name`. */
  holds(name: string): boolean {
    return this.#held.has(name);
  }

  /** The instance this node writes `name` through, while it holds the lease. */
  instance(name: string): Volume | null {
    return this.#held.get(name)?.volume ?? null;
  }

  /** How many times this node lost the lease of `name` (connections older are fenced). */
  losses(name: string): number {
    return this.#losses.get(name) ?? 0;
  }

  /** The losses of the lease of `name` at this node, and those by force (LeaseLosses). */
  lossesOf(name: string): LeaseLosses {
    return { losses: this.losses(name), forcedLosses: this.#forced.get(name) ?? 0 };
  }

  async open(name: string): Promise<VolumeHandle> {
    const volume = await this.#store.readableVolume(name);
    return new RadosVolumeHandle(this, this.#store, name, volume.sizeBytes, this.lossesOf(name));
  }

  /**
   * Reads `range` of `name` as of the last flush, at a node that does not hold
   * it: from the reader kept for the record version last seen, while the
   * version is read again at the same time; a newer record means a new reader
   * and a second read.
   */
  readFlushed(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    return this.#flushed.read(name, range, into);
  }

  /** The volume's info, with where its lease is. */
  async info(name: string) {
    return { ...await this.#store.volumeInfo(name), heldHere: this.holds(name) };
  }

  /** Takes the write lease of `name` to this node, asking (then forcing) its holder. */
  acquire(name: string): Promise<void> {
    if (this.#held.has(name)) return Promise.resolve();
    return this.#locks.run(name, async () => {
      if (this.#held.has(name)) return;
      await this.#move(name, this.selfId);
      this.counters.acquired++;
    });
  }

  /** Breaks the lease of `name`: nobody holds it after, and its holder is fenced. */
  breakLease(name: string): Promise<void> {
    return this.#locks.run(name, () => this.#move(name, null));
  }

  /**
   * Storage refused this node as the writer of `name` under lease epoch
   * `epoch` (a newer epoch wrote an object, or the record moved on): stop
   * holding it, fence its connections. A lease taken again since (a newer
   * epoch) stays: the refusal was of an instance dropped before.
   */
  noteLost(name: string, epoch: number): void {
    const held = this.#held.get(name);
    if (held === undefined || held.epoch > epoch) return;
    log.warn("lost the write lease of volume {volume} (epoch {epoch})", {
      volume: name,
      epoch: held.epoch,
    });
    this.#countLoss(name);
    this.#countForced(name);
    this.#letGo(name, held);
  }

  /** The cluster blocklisted this node's client: every lease it held is gone. */
  noteBlocklisted(): void {
    for (const [name, held] of [...this.#held]) this.noteLost(name, held.epoch);
  }

  /** Gives every lease back (a node stopping): flushed, and the records say nobody holds them. */
  async releaseAll(): Promise<void> {
    for (const name of [...this.#held.keys()]) {
      await this.#release(name).catch((error) =>
        log.warn("lease of {volume} not released: {error}", { volume: name, error: String(error) })
      );
    }
  }

  async #move(name: string, to: string | null): Promise<void> {
    const moved = await moveLease(this.#engine, name, to, {
      selfId: this.selfId,
      releaseTimeoutMs: this.#options.releaseTimeoutMs ?? releaseTimeoutMsDefault,
      fenceSettleMs: this.#options.fenceSettleMs ?? fenceSettleMsDefault,
      onFenced: () => this.counters.takeovers++,
    });
    this.#store.dropVolume(name);
    this.#flushed.forget(name);
    if (to === this.selfId) await this.#hold(name, moved);
    log.info("write lease of volume {volume} moved from {from} to {to} at epoch {epoch}", {
      volume: name,
      from: moved.from.holder,
      to,
      epoch: moved.to.epoch,
    });
  }

  /** Holds the lease of `name` just moved here: watches for asks, opens the record written. */
  async #hold(name: string, moved: MovedLease): Promise<void> {
    const cookie = await watchAsks(this.#engine, name, (cookie) => {
      const watched = this.#watches.get(cookie);
      return watched === undefined ? Promise.resolve() : this.#release(watched);
    });
    const volume = await this.#store.adoptVolume(name, moved.bytes, moved.version);
    this.#held.set(name, { epoch: moved.to.epoch, uid: moved.uid, cookie, volume });
    this.#names.set(moved.uid, name);
    this.#watches.set(cookie, name);
  }

  /**
   * Lets go of `name` when asked: fences its connections, persists, clears the
   * holder. An ask can be stale: a holder that did not answer in time (a host
   * paused, as SIGSTOP does) finds it when it wakes, after the asker took the
   * lease by force. Then the record has moved on, or storage refuses this node
   * (blocklisted): that is a loss by force, whose connections' FLUSH fails (the
   * writes acknowledged since their last flush may be gone), not a release.
   */
  #release(name: string): Promise<void> {
    return this.#locks.run(name, async () => {
      const held = this.#held.get(name);
      if (held === undefined) return;
      this.#countLoss(name);
      let released = false;
      try {
        await (await this.#store.openVolume(name)).release();
        released = await clearHolder(this.#engine, name, held.epoch);
      } finally {
        // Unless noteLost() let go of it meanwhile (storage said blocklisted), counting it.
        if (this.#held.get(name) === held) {
          if (!released) {
            log.warn("asked to let go of volume {volume}, found its lease taken by force", {
              volume: name,
            });
            this.#countForced(name);
          }
          this.#letGo(name, held);
        }
      }
      if (released) this.counters.released++;
    });
  }

  /** Settles once a lease operation on `name` under way (a move, a release) has ended. */
  settled(name: string): Promise<void> {
    return this.#locks.run(name, () => {});
  }

  #countLoss(name: string): void {
    this.#losses.set(name, this.losses(name) + 1);
  }

  #countForced(name: string): void {
    this.#forced.set(name, (this.#forced.get(name) ?? 0) + 1);
  }

  #letGo(name: string, held: Held): void {
    this.#held.delete(name);
    this.#names.delete(held.uid);
    this.#watches.delete(held.cookie);
    this.#store.dropVolume(name);
    unwatchAsks(this.#engine, held.cookie);
  }

  async #refuseIfHeldElsewhere(name: string): Promise<void> {
    if (this.#held.has(name)) return;
    const holder = await recordedHolder(this.#engine, name);
    if (holder === null || holder === this.selfId) return;
    throw new ConflictError(
      `Cannot change volume "${name}" through this node: node ${holder} holds its write lease, ` +
        `so a VM may be writing it there; ask that node, or move the lease first ` +
        `(atoll volume lease)`,
    );
  }
}
