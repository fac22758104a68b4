/**
 * Write leases: at most one node writes a volume at a time, and the lease
 * follows the VM during a live migration (DESIGN.md invariant 3).
 *
 * The lease lives in the volume's record (`lease: {holder, epoch}`), so taking
 * it is a compare-and-set of the record: the old holder, whose instance still
 * names the older record version, can no longer persist a map.
 *
 * Moving the lease to this node (the first write through it, or an operator):
 * 1. ask the holder to release: it makes durable everything it acknowledged,
 *    fences its open connections and drops its instance. A holder that cannot
 *    be reached is waited for until gossip declares it dead (bounded).
 * 2. raise the fence of the volume to the new epoch on every live member, so
 *    storage refuses anything the old holder still sends;
 * 3. write `{holder: self, epoch + 1}` into the record (CAS), reload the volume.
 *
 * Every connection open at a node when that node loses the lease is fenced for
 * writes for good (its writes fail with EIO and never land); reads, FLUSH and
 * DISC still succeed, so a migrating QEMU finishes cleanly. Connections opened
 * later may take the lease back (migrating back).
 *
 * Reads at a node that does not hold the lease are forwarded to the holder, so
 * they see every write it acknowledged; without a live holder they read the
 * last flushed state from the record.
 */
import {
  type ByteRange,
  type Clock,
  ConflictError,
  type LeaseLosses,
  LeaseLostError,
  type Store,
  systemClock,
  UnavailableError,
  type VolumeAccess,
  type VolumeAuthority,
  type VolumeHandle,
  type VolumeInfo,
} from "../../core/mod.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import type { RpcCaller, RpcMethod } from "../transport/mod.ts";
import { LeasedVolumeHandle } from "./leased_volume.ts";
import { LeaseValidity, leaseValidMsDefault } from "./_lease_validity.ts";
import { LeaseMessages } from "./_lease_messages.ts";
import { HolderReads } from "./_holder_reads.ts";
import { HeldLeases } from "./_held_leases.ts";
import { LeaseMoves } from "./_lease_moves.ts";
import { IdleRelease, idleReleaseMsDefault } from "./_idle_release.ts";
import { type LeaseCounters, newLeaseCounters } from "./_lease_counters.ts";

export type { LeaseCounters };

/** Longest wait for an unreachable holder to be declared dead before a takeover. */
export const takeoverWaitMsDefault = 30_000;

/** Options of {@linkcode LeaseManager}. */
export interface LeaseManagerOptions {
  /** The store (built after the lease manager, since the store takes its `access`). */
  store: () => Store;
  engine: ClusterEngine;
  rpc: RpcCaller;
  takeoverWaitMs?: number;
  /** The clock of waits for a holder and of the move counters; the system's unless told. */
  clock?: Clock;
  /** How long a holder serves without reading its record again (_lease_validity.ts). */
  leaseValidMs?: number;
  /** How long after its last write an unused lease is given up when read elsewhere (_idle_release.ts). */
  idleReleaseMs?: number;
}

/** The write leases of this node: the volumes' authority in a cluster. */
export class LeaseManager implements VolumeAuthority {
  readonly counters: LeaseCounters = newLeaseCounters();
  #storeOf: () => Store;
  #engine: ClusterEngine;
  #rpc: RpcCaller;
  #clock: Clock;
  #validity: LeaseValidity;
  #messages: LeaseMessages;
  #reads: HolderReads;
  #leases: HeldLeases;
  #moves: LeaseMoves;
  #idle: IdleRelease;

  /**
   * The store's say on volume access: a write path takes the lease first; a
   * catalogue change (snapshot, deletion) is refused while another live node
   * holds it; this node's open instance is current only while it holds it.
   */
  readonly access: VolumeAccess = {
    acquire: async (name, purpose) => {
      if (purpose === "catalogue") await this.#refuseIfHeldElsewhere(name);
      await this.acquire(name);
    },
    isCurrent: (name) => this.#leases.has(name),
    heldLease: (name) => {
      const held = this.#leases.get(name);
      return held === undefined ? null : { holder: this.#engine.selfId, epoch: held.epoch };
    },
  };

  constructor(options: LeaseManagerOptions) {
    this.#storeOf = options.store;
    this.#engine = options.engine;
    this.#rpc = options.rpc;
    this.#clock = options.clock ?? systemClock;
    this.#messages = new LeaseMessages(
      this.#engine,
      this.#rpc,
      this.#clock,
      options.takeoverWaitMs ?? takeoverWaitMsDefault,
      this.counters,
    );
    this.#reads = new HolderReads({
      store: this.#storeOf,
      engine: this.#engine,
      rpc: this.#rpc,
      counters: this.counters,
      holds: (name) => this.#leases.has(name),
      confirm: (name) => this.confirm(name),
      readElsewhere: (name) => this.#idle.readElsewhere(name),
      clock: this.#clock,
      validMs: options.leaseValidMs ?? leaseValidMsDefault,
    });
    this.#validity = new LeaseValidity(
      this.#clock,
      options.leaseValidMs ?? leaseValidMsDefault,
      (name) => this.#stillHeld(name),
    );
    this.#leases = new HeldLeases({
      store: this.#storeOf,
      engine: this.#engine,
      clock: this.#clock,
      validity: this.#validity,
      reads: this.#reads,
      counters: this.counters,
    });
    this.#moves = new LeaseMoves({
      store: this.#storeOf,
      engine: this.#engine,
      clock: this.#clock,
      messages: this.#messages,
      reads: this.#reads,
      leases: this.#leases,
      counters: this.counters,
    });
    this.#idle = new IdleRelease({
      store: this.#storeOf,
      clock: this.#clock,
      leases: this.#leases,
      moves: this.#moves,
      graceMs: options.idleReleaseMs ?? idleReleaseMsDefault,
    });
  }

  /**
   * Resolves when this node may serve `name` from its own instance now (it
   * holds the lease and confirmed it recently: _lease_validity.ts); throws
   * LeaseLostError when the lease moved, UnavailableError when nobody can say.
   */
  async confirm(name: string): Promise<void> {
    if (!this.#leases.has(name)) return;
    try {
      await this.#validity.confirm(name);
    } catch (error) {
      if (error instanceof LeaseLostError) throw error;
      throw new UnavailableError(
        `Cannot use volume "${name}" on this node now: it cannot confirm that it still ` +
          `holds the write lease (${(error as Error).message})`,
        { cause: error },
      );
    }
  }

  /** Reads the record: true when it still names this node at the epoch held; else lets go. */
  async #stillHeld(name: string): Promise<boolean> {
    const held = this.#leases.get(name);
    const lease = (await this.#store.loadVolume(name)).lease;
    if (held !== undefined && lease?.holder === this.#engine.selfId && lease.epoch === held.epoch) {
      return true;
    }
    if (held !== undefined && this.#leases.get(name) === held) this.noteLost(name, held.epoch);
    return false;
  }

  get #store(): Store {
    return this.#storeOf();
  }

  /** The epoch this node writes volume `uid` under; 0 when it holds no lease on it. */
  epochOf(uid: string): number {
    return this.#leases.epochOf(uid);
  }

  /** See LeaseMessages.takeoversOf: takeovers of volume `name` this node began. */
  takeoversOf(name: string): number {
    return this.#messages.takeoversOf(name);
  }

  /** See HeldLeases.trusted: this node's knowledge as the writer of volume `uid` is current. */
  trustsWriter(uid: string): boolean {
    return this.#leases.trusted(uid);
  }

  /** True when this node holds the write lease of `name`. */
  holds(name: string): boolean {
    return this.#leases.has(name);
  }

  /** How many times this node lost the lease of `name`. */
  losses(name: string): number {
    return this.#leases.losses(name);
  }

  /** The losses of the lease of `name` at this node, and those by force (LeaseLosses). */
  lossesOf(name: string): LeaseLosses {
    return { losses: this.losses(name), forcedLosses: this.#leases.forcedLosses(name) };
  }

  /** A write of `name` through this node begins: its lease is in use until the function returned. */
  writeBegins(name: string): () => void {
    return this.#idle.writeBegins(name);
  }

  /** Takes the write lease of `name` to this node, moving it from its holder. */
  acquire(name: string): Promise<void> {
    return this.#moves.acquire(name);
  }

  /**
   * Breaks the lease of `name` (an operator, for a holder that is gone for good):
   * nobody holds it afterwards, and the old holder's writes are fenced.
   */
  breakLease(name: string): Promise<void> {
    return this.#moves.breakLease(name);
  }

  async #refuseIfHeldElsewhere(name: string): Promise<void> {
    if (this.#leases.has(name)) return;
    const holder = (await this.#store.loadVolume(name)).lease?.holder ?? null;
    if (holder === null || holder === this.#engine.selfId) return;
    const member = this.#engine.member(holder);
    if (member?.status !== "alive" && member?.status !== "suspect") return;
    throw new ConflictError(
      `Cannot change volume "${name}" through this node: node ${holder} (cluster address ` +
        `${member.address}) ` +
        `holds its write lease, so a VM may be writing it there; ask that node, or move the ` +
        `lease first (atoll volume lease)`,
    );
  }

  /** The volume as the cluster sees it now, with its lease. */
  async info(name: string): Promise<VolumeInfo & { heldHere: boolean }> {
    // The holder's own instance is current; elsewhere volumeInfo reads the record.
    return { ...await this.#store.volumeInfo(name), heldHere: this.#leases.has(name) };
  }

  /** Reads `range` of `name`, coherent with the holder wherever it is. */
  read(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    return this.#reads.read(name, range, into);
  }

  /**
   * Flushes `name` where it is written: here when held, else at its live holder
   * (a flush is coherent with the holder, as reads are: it reports a loss of
   * writes the holder found there).
   */
  flush(name: string): Promise<void> {
    return this.#reads.flush(name);
  }

  /** A handle on volume `name` for one client (an NBD connection, an HTTP request). */
  async open(name: string): Promise<VolumeHandle> {
    const volume = await this.#store.loadVolume(name);
    return new LeasedVolumeHandle(this, this.#store, name, volume.sizeBytes, this.lossesOf(name));
  }

  /** The methods other members call: release a lease, read a held volume, fence. */
  methods(): Record<string, RpcMethod> {
    return {
      "lease.release": async (request) => {
        const name = String(request.header.name);
        const epoch = Number(request.header.epoch);
        const takenOver = request.header.takenOver === true;
        const released = await this.#moves.release(name, epoch, takenOver);
        // Where this node placed the volume's data: the node taking the lease over
        // must know every one of them before it learns where the objects stand.
        const members = this.#engine.placementMembers().map((member) => member.id);
        return { header: { released, members } };
      },
      ...this.#reads.methods(),
    };
  }

  /**
   * Storage or the record refused this node as the writer of `name` under
   * lease epoch `epoch` (the lease was taken while this node was cut off):
   * stop holding it, fence its connections. A refusal of a write under an
   * older epoch than the one held now (an instance dropped when the lease
   * moved away, still writing after this node took it again) says nothing of
   * the lease held: it stays (seed 10123464 with joins, leaves and replacements).
   */
  noteLost(name: string, epoch: number): void {
    this.#leases.lose(name, epoch);
  }
}
