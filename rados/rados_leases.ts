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
 */
import {
  type ByteRange,
  ConflictError,
  NotFoundError,
  type Store,
  VersionMismatchError,
  type Volume,
  type VolumeAccess,
  type VolumeAuthority,
  type VolumeHandle,
  type VolumeLease,
} from "../core/mod.ts";
import { KeyedMutex } from "../core/_mutex.ts";
import {
  decodeRecordHeader,
  recordKey,
  type VolumeHeader,
  withRecordHeader,
} from "../core/records.ts";
import type { RadosEngine } from "./rados_engine.ts";
import { RadosVolumeHandle } from "./_rados_volume_handle.ts";
import { WriteOp } from "./_ops.ts";
import { logger } from "../log/mod.ts";

const log = logger("leases");

/** Default time a holder has to let go when asked, before it is fenced by force. */
export const releaseTimeoutMsDefault = 10_000;
/** Default pause after blocklisting a holder, for every OSD to learn the new OSD map. */
export const fenceSettleMsDefault = 1_000;
/** Blocklist entries expire after this; a fenced client reconnects as a new one long before. */
const blocklistSeconds = 24 * 3600;
/** Tries to move a lease when other nodes race for it. */
const moveAttemptsMax = 16;

/** The lease as it is kept in the record on RADOS: the holder's client address too. */
type RadosLease = VolumeLease & { client?: string };

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
  #locks = new KeyedMutex();
  /** Readers of volumes held elsewhere: the instance and the record version it was read at. */
  #readers = new Map<string, { version: number; volume: Promise<Volume> }>();

  /** The store's say on volume access: a write path takes the lease first. */
  readonly access: VolumeAccess = {
    acquire: async (name, purpose) => {
      if (purpose === "catalogue") await this.#refuseIfHeldElsewhere(name);
      await this.acquire(name);
    },
    isCurrent: (name) => this.#held.has(name),
  };

  constructor(options: RadosLeasesOptions) {
    this.#options = options;
    this.selfId = options.selfId;
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

  async open(name: string): Promise<VolumeHandle> {
    const volume = await this.#store.readableVolume(name);
    return new RadosVolumeHandle(this, this.#store, name, volume.sizeBytes, this.losses(name));
  }

  /**
   * Reads `range` of `name` as of the last flush, at a node that does not hold
   * it: from the reader kept for the record version last seen, while the
   * version is read again at the same time; a newer record means a new reader
   * and a second read.
   */
  async readFlushed(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    const key = recordKey.volume(name);
    const known = this.#readers.get(name);
    if (known !== undefined) {
      const [version] = await Promise.all([
        this.#engine.metaVersion(key),
        known.volume.then((volume) => volume.readAt(range, into)),
      ]);
      if (version === known.version) return;
    }
    const volume = this.#store.loadVolume(name);
    const loaded = await volume;
    this.#readers.set(name, { version: loaded.version, volume });
    await loaded.readAt(range, into);
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
   * Storage refused this node as the writer of `name` (a newer epoch wrote an
   * object, or the record moved on): stop holding it, fence its connections.
   */
  noteLost(name: string): void {
    const held = this.#held.get(name);
    if (held === undefined) return;
    log.warn("lost the write lease of volume {volume} (epoch {epoch})", {
      volume: name,
      epoch: held.epoch,
    });
    this.#countLoss(name);
    this.#letGo(name, held);
  }

  /** The cluster blocklisted this node's client: every lease it held is gone. */
  noteBlocklisted(): void {
    for (const name of [...this.#held.keys()]) this.noteLost(name);
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
    let asked: string | null = null;
    for (let attempt = 0; attempt < moveAttemptsMax; attempt++) {
      const key = recordKey.volume(name);
      const entry = await this.#engine.getMeta(key);
      if (entry === null) {
        throw new NotFoundError(`Cannot move the lease of "${name}": no such volume`);
      }
      const header = decodeRecordHeader<VolumeHeader>(entry.value);
      const lease: RadosLease = header.lease ?? { holder: null, epoch: 0 };
      if (lease.holder !== null) {
        const state = `${lease.holder}@${lease.epoch}`;
        if (to !== null && lease.holder !== this.selfId && asked !== state) {
          asked = state;
          await this.#askRelease(name);
          continue; // read the record again: released, or still held
        }
        await this.#fence(name, lease);
      }
      const next: RadosLease = to === null
        ? { holder: null, epoch: lease.epoch + 1 }
        : { holder: to, epoch: lease.epoch + 1, client: this.#engine.connection.address };
      const bytes = withRecordHeader(entry.value, { ...header, lease: next });
      let version: number;
      try {
        version = await this.#engine.putMeta(key, bytes, entry.version);
      } catch (error) {
        if (error instanceof VersionMismatchError) continue; // moved meanwhile
        throw error;
      }
      this.#store.dropVolume(name);
      this.#readers.delete(name);
      if (to === this.selfId) await this.#hold(name, next.epoch, header.uid, bytes, version);
      log.info("write lease of volume {volume} moved from {from} to {to} at epoch {epoch}", {
        volume: name,
        from: lease.holder,
        to,
        epoch: next.epoch,
      });
      return;
    }
    throw new ConflictError(`Cannot move the write lease of "${name}": other nodes kept moving it`);
  }

  /** Asks the holder of `name` to let go; returns once it did or the time is up. */
  async #askRelease(name: string): Promise<void> {
    const engine = this.#engine;
    await engine.connection.notify(engine.metaContext, watchObject(name), this.#releaseTimeoutMs);
  }

  get #releaseTimeoutMs(): number {
    return this.#options.releaseTimeoutMs ?? releaseTimeoutMsDefault;
  }

  /** Fences a holder that did not let go: the cluster blocklists its client. */
  async #fence(name: string, lease: RadosLease): Promise<void> {
    const engine = this.#engine;
    if (lease.client === undefined || lease.client === engine.connection.address) return;
    log.warn("fencing client {client} of node {holder}: it did not release volume {volume}", {
      client: lease.client,
      holder: lease.holder,
      volume: name,
    });
    await engine.connection.blocklist(lease.client, blocklistSeconds);
    await new Promise((resolve) =>
      setTimeout(resolve, this.#options.fenceSettleMs ?? fenceSettleMsDefault)
    );
    this.counters.takeovers++;
  }

  async #hold(name: string, epoch: number, uid: string, bytes: Uint8Array, version: number) {
    const engine = this.#engine;
    const io = engine.metaContext;
    await new WriteOp().create(false).operate(io, watchObject(name));
    const cookie = await engine.connection.watch(io, watchObject(name), (notifyId, cookie) => {
      const watched = this.#watches.get(cookie);
      (async () => {
        if (watched !== undefined) await this.#release(watched);
        await engine.connection.ack(io, watchObject(name), notifyId, cookie);
      })().catch((error) =>
        log.warn("could not let go of volume {volume} when asked: {error}", {
          volume: name,
          error: String(error),
        })
      );
    });
    const volume = await this.#store.adoptVolume(name, bytes, version);
    this.#held.set(name, { epoch, uid, cookie, volume });
    this.#names.set(uid, name);
    this.#watches.set(cookie, name);
  }

  /** Lets go of `name` when asked: fences its connections, persists, clears the holder. */
  #release(name: string): Promise<void> {
    return this.#locks.run(name, async () => {
      const held = this.#held.get(name);
      if (held === undefined) return;
      this.#countLoss(name);
      await (await this.#store.openVolume(name)).release();
      const key = recordKey.volume(name);
      const entry = await this.#engine.getMeta(key);
      const header = entry === null ? null : decodeRecordHeader<VolumeHeader>(entry.value);
      if (entry !== null && header?.lease?.epoch === held.epoch) {
        const bytes = withRecordHeader(entry.value, {
          ...header,
          lease: { holder: null, epoch: held.epoch },
        });
        await this.#engine.putMeta(key, bytes, entry.version);
      }
      this.#letGo(name, held);
      this.counters.released++;
    });
  }

  #countLoss(name: string): void {
    this.#losses.set(name, this.losses(name) + 1);
  }

  #letGo(name: string, held: Held): void {
    this.#held.delete(name);
    this.#names.delete(held.uid);
    this.#watches.delete(held.cookie);
    this.#store.dropVolume(name);
    this.#engine.connection.unwatch(this.#engine.metaContext, held.cookie).catch(() => {});
  }

  async #refuseIfHeldElsewhere(name: string): Promise<void> {
    if (this.#held.has(name)) return;
    const entry = await this.#engine.getMeta(recordKey.volume(name));
    if (entry === null) return; // the store says NotFound
    const holder = decodeRecordHeader<VolumeHeader>(entry.value).lease?.holder ?? null;
    if (holder === null || holder === this.selfId) return;
    throw new ConflictError(
      `Cannot change volume "${name}" through this node: node ${holder} holds its write lease, ` +
        `so a VM may be writing it there; ask that node, or move the lease first ` +
        `(atoll volume lease)`,
    );
  }
}

/** The object whose watchers hold the lease of volume `name` (metadata namespace). */
function watchObject(name: string): string {
  return `lease.${name}`;
}
