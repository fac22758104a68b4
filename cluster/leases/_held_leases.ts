/**
 * The write leases this node holds: the epoch it writes each volume under,
 * how many times it lost each (every connection open at a loss is fenced for
 * good), and how many of those were forced (the lease taken without this
 * node's release: a connection open then fails its flushes for good). Taking
 * a lease starts its validity (_lease_validity.ts); letting it go, or losing
 * it, drops what this node kept of the volume: its instance, its objects'
 * state, where its reads went.
 */
import type { Clock, Store } from "../../core/mod.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import type { HolderReads } from "./_holder_reads.ts";
import type { LeaseValidity } from "./_lease_validity.ts";
import type { LeaseCounters } from "./leases.ts";
import { logger } from "../../log/mod.ts";

const log = logger("leases");

/** A lease this node holds. */
export interface HeldLease {
  readonly epoch: number;
  readonly uid: string;
  /** When a write through this node last ended (or the lease was taken), by the node's clock. */
  lastWriteMs: number;
}

/** What {@linkcode HeldLeases} needs of its node. */
export interface HeldLeasesOptions {
  store: () => Store;
  engine: ClusterEngine;
  clock: Clock;
  validity: LeaseValidity;
  reads: HolderReads;
  counters: LeaseCounters;
}

/** The leases of one node; see the module doc. */
export class HeldLeases {
  /** Volumes this node holds: name → epoch and uid. */
  #held = new Map<string, HeldLease>();
  /** Volume uid → the name of the volume (its lease in `#held`). */
  #names = new Map<string, string>();
  /** Times this node lost the lease of a volume (connections older than a loss are fenced). */
  #losses = new Map<string, number>();
  /** Of those, the losses without a release (their unflushed writes may be gone). */
  #forced = new Map<string, number>();
  #options: HeldLeasesOptions;

  constructor(options: HeldLeasesOptions) {
    this.#options = options;
  }

  /** True when this node holds the write lease of `name`. */
  has(name: string): boolean {
    return this.#held.has(name);
  }

  /** The lease of `name` this node holds, if any. */
  get(name: string): HeldLease | undefined {
    return this.#held.get(name);
  }

  /** The epoch this node writes volume `uid` under; 0 when it holds no lease on it. */
  epochOf(uid: string): number {
    const name = this.#names.get(uid);
    return name === undefined ? 0 : this.#held.get(name)?.epoch ?? 0;
  }

  /** How many times this node lost the lease of `name`. */
  losses(name: string): number {
    return this.#losses.get(name) ?? 0;
  }

  /** How many times the lease of `name` was taken from this node without its release. */
  forcedLosses(name: string): number {
    return this.#forced.get(name) ?? 0;
  }

  /**
   * True while this node holds the lease of volume `uid` and confirmed it within
   * its validity: what it knows as the writer of the volume's objects is then
   * the truth. A holder cut off from the others may have been taken over
   * without knowing yet; reads that do not confirm the lease (a snapshot's)
   * must not trust that knowledge then.
   */
  trusted(uid: string): boolean {
    const name = this.#names.get(uid);
    return name !== undefined && this.#options.validity.isValid(name);
  }

  /** This node took the lease of `name` (volume `uid`) at `epoch`. */
  hold(name: string, epoch: number, uid: string): void {
    const now = this.#options.clock.now();
    this.#held.set(name, { epoch, uid, lastWriteMs: now });
    this.#names.set(uid, name);
    this.#options.validity.granted(name, now);
  }

  /** A write of `name` through this node ended (_idle_release.ts). */
  wrote(name: string): void {
    const held = this.#held.get(name);
    if (held !== undefined) held.lastWriteMs = this.#options.clock.now();
  }

  /** Counts a loss of `name`: connections open now are fenced for good. */
  countLoss(name: string): void {
    this.#losses.set(name, this.losses(name) + 1);
  }

  /**
   * This node lost the lease of `name` it held at `epoch` or before
   * (LeaseManager.noteLost): stop holding it. One taken again since stays.
   */
  lose(name: string, epoch: number): void {
    const held = this.#held.get(name);
    if (held === undefined || held.epoch > epoch) return;
    log.warn("lost the write lease of volume {volume} (epoch {epoch})", {
      volume: name,
      epoch: held.epoch,
    });
    this.#held.delete(name);
    this.#options.validity.forget(name);
    this.#names.delete(held.uid);
    this.countLoss(name);
    this.#countForced(name);
    this.#options.reads.forget(name);
    this.#options.store().dropVolume(name);
    this.#options.engine.objects.forget(held.uid);
  }

  /**
   * This node gave up `held`, its lease of `name` (a release): stop holding it.
   * `forced`: without persisting what it acknowledged (the lease was taken over).
   */
  released(name: string, held: HeldLease, forced: boolean): void {
    if (forced) this.#countForced(name);
    this.#held.delete(name);
    this.#options.validity.forget(name);
    this.#names.delete(held.uid);
    this.#options.reads.forget(name);
    this.#options.counters.released++;
    this.#options.store().dropVolume(name);
    this.#options.engine.objects.forget(held.uid);
  }

  #countForced(name: string): void {
    this.#forced.set(name, this.forcedLosses(name) + 1);
  }
}
