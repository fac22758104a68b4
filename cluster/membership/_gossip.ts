/**
 * Gossip of membership updates: the queue of updates waiting to go out, piggybacked on
 * every datagram within its size, and gossip rounds to a few random members every gossip
 * interval while any are queued (the timer is armed only then, so an idle node sends
 * nothing). A node leaving stops once its "left" has gone out.
 *
 * @module
 */

import { BroadcastQueue } from "./_broadcast_queue.ts";
import { type MembershipConfig, transmitLimit } from "./_membership_config.ts";
import { isLive, type Member, type MemberTable } from "./_member_table.ts";
import type { SendOptions } from "./_prober.ts";
import {
  baseBytesMax,
  datagramBytesMax,
  type DatagramMessage,
  envelopeBytesReserve,
  type Update,
  updateBytes,
  updatesPerMessageMax,
} from "./messages.ts";
import type { MembershipEnv, TimerHandle } from "./_membership_env.ts";

/** What gossip needs from its membership. */
export interface GossipHost {
  readonly config: MembershipConfig;
  readonly env: MembershipEnv;
  readonly table: MemberTable;
  readonly selfId: string;
  /** True once started and until stopped: a gossip timer may be armed. */
  active(): boolean;
  /** True while leaving gracefully. */
  leaving(): boolean;
  /** Stops the membership (a leaving node whose "left" went out). */
  stop(): void;
  after(delayMs: number, fn: () => void): TimerHandle;
  /** Up to `count` distinct random peers that `accept` takes. */
  randomPeers(count: number, accept: (member: Member) => boolean): Member[];
}

/** The gossip of one membership; see the module documentation. */
export class Gossip {
  readonly #host: GossipHost;
  readonly #queue = new BroadcastQueue();
  #gossipTimer: TimerHandle | null = null;
  #gossipPhaseMs = 0;

  constructor(host: GossipHost) {
    this.#host = host;
  }

  /** Updates waiting to go out. */
  get queued(): number {
    return this.#queue.size;
  }

  /** Sets the random phase of gossip rounds (called once, at start). */
  start(): void {
    const env = this.#host.env;
    this.#gossipPhaseMs = env.now() + env.random() * this.#host.config.gossipIntervalMs;
  }

  /** Membership stopped, its timers cancelled: forgets the gossip timer. */
  stopped(): void {
    this.#gossipTimer = null;
  }

  enqueue(update: Update): void {
    this.#queue.enqueue(update);
    this.arm();
  }

  /** Arms the gossip timer for the next round of the phase, unless armed already. */
  arm(): void {
    if (this.#gossipTimer !== null || !this.#host.active()) return;
    const intervalMs = this.#host.config.gossipIntervalMs;
    const now = this.#host.env.now();
    const rounds = Math.floor((now - this.#gossipPhaseMs) / intervalMs) + 1;
    const delayMs = this.#gossipPhaseMs + rounds * intervalMs - now;
    this.#gossipTimer = this.#host.after(delayMs, () => this.#gossipTick());
  }

  /** Sends `message` with queued updates piggybacked (after `options.first`). */
  send(to: string, message: DatagramMessage, options?: SendOptions): void {
    this.#fill(message, options?.first, options?.piggyback ?? true);
    if (options?.stream) {
      this.#host.env.sendReliable(to, message);
    } else {
      this.#host.env.send(to, message);
    }
  }

  /** One gossip round; the timer is re-armed only while updates wait, so idle is free. */
  #gossipTick(): void {
    this.#gossipTimer = null;
    if (this.#host.leaving() && !this.#queue.has(this.#host.selfId)) {
      this.#host.stop();
      return;
    }
    if (this.#queue.size === 0) return;
    const now = this.#host.env.now();
    const deadWindowMs = this.#host.config.gossipToTheDeadMs;
    const targets = this.#host.randomPeers(
      this.#host.config.gossipFanout,
      (m) => isLive(m) || (m.status === "dead" && now - m.since <= deadWindowMs),
    );
    for (const target of targets) {
      const message: DatagramMessage = { type: "gossip", source: this.#host.selfId, updates: [] };
      this.#fill(message);
      if (message.updates.length === 0) break;
      this.#host.env.send(target.address, message);
    }
    if (targets.length > 0 && this.#queue.size > 0) this.arm();
  }

  /** Adds queued updates to `message` (after `first`), within one datagram. */
  #fill(message: DatagramMessage, first?: Update, piggyback = true): void {
    if ((this.#queue.size === 0 || !piggyback) && first === undefined) return;
    let budgetBytes = datagramBytesMax - envelopeBytesReserve - baseBytesMax(message);
    if (first !== undefined) {
      message.updates.push(first);
      budgetBytes -= updateBytes(first);
    }
    if (this.#queue.size === 0 || !piggyback) return;
    const limit = transmitLimit(this.#host.config, this.#host.table.live);
    const countMax = updatesPerMessageMax - message.updates.length;
    for (const update of this.#queue.take(budgetBytes, limit, countMax)) {
      message.updates.push(update);
    }
  }
}
