/**
 * SWIM membership with memberlist's refinements and Lifeguard's (local health awareness,
 * nacks, confirmation-accelerated suspicion, the buddy system), as a pure state machine:
 * the clock, randomness, timers and network are the {@linkcode MembershipEnv} it is given,
 * so the same code runs over real sockets and in the deterministic simulator.
 *
 * Each probe interval a node pings the next member of a shuffled round; a member that
 * misses its ack is pinged through helpers (ping-req) and over a stream, and is suspected
 * when all of those stay silent until the interval ends. Updates (alive, suspect, dead,
 * left) are piggybacked on every datagram and gossiped to a few random members every
 * gossip interval while any are queued. A suspected member refutes with a higher
 * incarnation. A suspicion lasts Lifeguard's timeout (shorter with more independent
 * accusers), but never less than the pause tolerance unless every other member accused;
 * in its last probe intervals the node probes the suspect itself, and declares it dead
 * only if those probes fail too. A node whose own timers fire late knows it was stopped:
 * it refutes at once and accuses nobody for a while. A periodic full-state push-pull
 * repairs whatever gossip missed, and also retries dead members, so a healed partition
 * merges back.
 *
 * @example
 * ```ts
 * const membership = new Membership({ id: "n1", address: "10.0.0.1:7946", zone: null, weight: 1 }, env);
 * membership.onChange((member) => console.log(member.id, member.status));
 * membership.start(["10.0.0.2:7946"]);
 * ```
 *
 * @module
 */

import { assert } from "../../core/assert.ts";
import { BroadcastQueue } from "./_broadcast_queue.ts";
import {
  confirmationsWanted,
  type MembershipConfig,
  pushPullIntervalFor,
  resolveConfig,
  transmitLimit,
} from "./_membership_config.ts";
import { isLive, type Member, MemberTable } from "./_member_table.ts";
import { type Probe, Prober, type SendOptions } from "./_prober.ts";
import { Suspicions } from "./_suspicions.ts";
import {
  baseBytesMax,
  datagramBytesMax,
  type DatagramMessage,
  envelopeBytesReserve,
  isMemberInfo,
  type MemberDigest,
  type MemberInfo,
  type MemberStatus,
  type Message,
  parseMessage,
  type PushPullMessage,
  type Update,
  updateBytes,
  updatesPerMessageMax,
} from "./messages.ts";

export type { MembershipConfig } from "./_membership_config.ts";
export { membershipConfigDefault, pushPullIntervalFor } from "./_membership_config.ts";
export type { MemberInfo, MemberStatus, Message, Update } from "./messages.ts";

/** A member as this node sees it; `since` is the time of its last status change. */
export interface MemberState extends MemberInfo {
  incarnation: number;
  status: MemberStatus;
  since: number;
}

/** A scheduled callback that can be called off. */
export interface TimerHandle {
  cancel(): void;
}

/** Everything outside the state machine: injected, so a simulation can stand in for it. */
export interface MembershipEnv {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Uniform in [0, 1); seeded in the simulator. */
  random(): number;
  schedule(delayMs: number, fn: () => void): TimerHandle;
  /** Unreliable datagram: may be lost, delayed or reordered. */
  send(to: string, message: Message): void;
  /** Stream (push-pull, join, fallback ping): may fail under partition, silently. */
  sendReliable(to: string, message: Message): void;
}

type Phase = "new" | "running" | "leaving" | "stopped";

/** One node's SWIM membership; see the module documentation. */
export class Membership {
  readonly #env: MembershipEnv;
  readonly #config: MembershipConfig;
  readonly #table: MemberTable;
  readonly #prober: Prober;
  readonly #suspicions: Suspicions;
  readonly #queue = new BroadcastQueue();
  readonly #listeners: ((member: MemberState) => void)[] = [];
  readonly #timers = new Set<TimerHandle>();
  #phase: Phase = "new";
  /** Lifeguard's local health score: 0 is healthy; probe intervals stretch by score + 1. */
  #awareness = 0;
  #probeOrder: Member[] = [];
  #probeIndex = 0;
  #probe: Probe | null = null;
  #gossipTimer: TimerHandle | null = null;
  #gossipPhaseMs = 0;
  #joined = true;
  #lastStallAt = -Infinity;
  #stallGraceUntil = -Infinity;

  constructor(self: MemberInfo, env: MembershipEnv, config?: Partial<MembershipConfig>) {
    if (!isMemberInfo(self)) {
      throw new TypeError(`Cannot create membership: invalid member info ${JSON.stringify(self)}`);
    }
    this.#env = env;
    const c = resolveConfig(config);
    this.#config = c;
    const after = (delayMs: number, fn: () => void) => this.#after(delayMs, fn);
    const cancel = (timer: TimerHandle) => this.#cancel(timer);
    const stalledSince = (time: number) => time <= this.#lastStallAt;
    this.#prober = new Prober({
      config: c,
      selfId: self.id,
      selfAddress: self.address,
      now: () => env.now(),
      random: () => env.random(),
      after,
      cancel,
      send: (to, message, options) => this.#send(to, message, options),
      helpers: (count, target) =>
        this.#randomPeers(count, (m) => m.status === "alive" && m !== target),
      stalledSince,
    });
    this.#suspicions = new Suspicions({
      config: c,
      prober: this.#prober,
      now: () => env.now(),
      live: () => this.#table.live,
      after,
      cancel,
      stalledSince,
      stallGraceUntil: () => this.#stallGraceUntil,
      declareDead: (member, incarnation) =>
        this.#table.apply({ kind: "dead", id: member.id, incarnation, from: this.#id }, true),
    });
    this.#table = new MemberTable(self, {
      now: () => env.now(),
      broadcast: (update) => this.#enqueue(update),
      changed: (member) => this.#notify(member),
      added: (member) => this.#addToProbeRound(member),
      refute: (incarnation) => this.#refute(incarnation),
      suspicionChanged: (member) => this.#suspicions.changed(member),
      suspicionEnded: (member) => this.#suspicions.ended(member),
      // Relaying confirmations helps only until they bring the timeout to its minimum
      // (memberlist's rule); beyond, each accuser still gossips its own accusation.
      relayConfirmation: (member, accuser) =>
        accuser === this.#id ||
        (member.accusers?.size ?? 0) <= confirmationsWanted(c, this.#table.live) + 1,
    });
  }

  /** Joins through `seeds` (push-pull with each, retried until one answers) and starts. */
  start(seeds: string[]): void {
    if (this.#phase !== "new") throw new Error(`Cannot start membership: it is ${this.#phase}`);
    this.#phase = "running";
    const self = this.#table.self;
    self.since = this.#env.now();
    this.#notify(self);
    this.#enqueue(this.#selfUpdate());
    // Random phases, so that nodes started together do not probe and gossip in lockstep.
    const c = this.#config;
    this.#after(this.#env.random() * c.probeIntervalMs, () => this.#probeTick());
    const phase = this.#env.random();
    this.#after(phase * c.pushPullIntervalMs, () => this.#firstPushPull(phase));
    this.#gossipPhaseMs = this.#env.now() + this.#env.random() * c.gossipIntervalMs;
    const others = seeds.filter((address) => address !== self.address);
    if (others.length > 0) {
      this.#joined = false;
      this.#join(others, c.joinRetryMs);
    }
  }

  /** Leaves gracefully: gossips "left" and stops once it has been sent (or after a drain). */
  leave(): void {
    if (this.#phase !== "running") return;
    this.#phase = "leaving";
    this.#table.leave();
    this.#enqueue(this.#selfUpdate());
    this.#after(this.#config.leaveDrainMaxMs, () => this.stop());
  }

  /** Stops every timer; later messages are ignored. */
  stop(): void {
    this.#phase = "stopped";
    for (const timer of this.#timers) timer.cancel();
    this.#timers.clear();
    this.#gossipTimer = null;
  }

  /**
   * Handles one message, validating it first (anything malformed is dropped). `_from`, the
   * transport's source address, is not needed: replies go to the message's `replyTo`, as a
   * stream's source port is ephemeral.
   */
  receive(_from: string, message: Message): void {
    if (this.#phase !== "running" && this.#phase !== "leaving") return;
    const m = parseMessage(message);
    if (m === undefined || m.source === this.#id) return;
    if (m.type === "push-pull") {
      this.#onPushPull(m);
    } else {
      // Updates first, so that an answer already carries a refutation they caused.
      let accused = false;
      for (const update of m.updates) {
        if (update.id === this.#id && update.kind !== "alive") accused = true;
        this.#table.apply(update, true);
      }
      this.#dispatch(m, accused);
    }
    // Updates queued while nobody was known to gossip to go out now that someone is.
    if (this.#queue.size > 0) this.#armGossip();
  }

  /** Every known member, this node included, by id. */
  members(): MemberState[] {
    const states = [...this.#table.all()].map(stateOf);
    return states.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Calls `listener` on every change of a member's status or incarnation, and on new ones. */
  onChange(listener: (member: MemberState) => void): void {
    this.#listeners.push(listener);
  }

  get #id(): string {
    return this.#table.self.id;
  }

  /**
   * Answers `m`. A message that accuses this node (suspect, dead, left), even with an old
   * incarnation, comes from someone who has not heard our refutation: it gets our current
   * state directly, in the ack of a ping or in a datagram of its own.
   */
  #dispatch(m: DatagramMessage, accused: boolean): void {
    const answer = accused ? this.#selfUpdate() : undefined;
    switch (m.type) {
      case "ping":
        if (m.target !== this.#id) return;
        this.#send(m.replyTo, { type: "ack", seq: m.seq, source: this.#id, updates: [] }, {
          stream: m.stream,
          first: answer,
        });
        return;
      case "ack":
        this.#prober.ack(m.seq);
        break;
      case "nack":
        this.#prober.nack(m.seq);
        break;
      case "ping-req":
        this.#prober.relay(m.seq, m.target, m.targetAddress, m.replyTo);
        break;
      case "gossip":
        break;
    }
    const accuser = answer === undefined ? undefined : this.#table.get(m.source);
    if (accuser !== undefined && answer !== undefined) {
      this.#send(accuser.address, { type: "gossip", source: this.#id, updates: [] }, {
        first: answer,
      });
    }
  }

  // Probing ---------------------------------------------------------------------------

  #probeTick(): void {
    this.#finishProbe();
    if (this.#phase !== "running") return;
    const target = this.#nextProbeTarget();
    if (target !== null) this.#probe = this.#prober.start(target);
    const intervalMs = this.#config.probeIntervalMs * (this.#awareness + 1);
    this.#after(intervalMs, () => this.#probeTick());
  }

  /** Closes the previous probe at the end of its interval: ack, or suspicion. */
  #finishProbe(): void {
    const probe = this.#probe;
    this.#probe = null;
    if (probe === null) return;
    this.#prober.finish(probe);
    if (probe.acked) {
      this.#adjustAwareness(-1);
      return;
    }
    // A probe that spanned a stall of this node proves nothing about the target.
    if (probe.startedAt <= this.#lastStallAt) return;
    // Lifeguard: helpers that did not even nack point at our own network, not the target's.
    this.#adjustAwareness(probe.helpers > 0 ? probe.helpers - probe.nacks : 1);
    const target = probe.target;
    if (!isLive(target)) return;
    this.#table.apply(
      { kind: "suspect", id: target.id, incarnation: probe.incarnation, from: this.#id },
      true,
    );
  }

  #nextProbeTarget(): Member | null {
    for (let pass = 0; pass < 2; pass += 1) {
      while (this.#probeIndex < this.#probeOrder.length) {
        const member = this.#probeOrder[this.#probeIndex++];
        if (isLive(member) && this.#table.get(member.id) === member) return member;
      }
      this.#newProbeRound();
    }
    return null;
  }

  /**
   * A new member goes at a random place in what is left of the current round (memberlist
   * does likewise), so it is probed soon rather than only from every node's next round.
   */
  #addToProbeRound(member: Member): void {
    const order = this.#probeOrder;
    const at = this.#probeIndex +
      Math.floor(this.#env.random() * (order.length - this.#probeIndex + 1));
    order.splice(at, 0, member);
  }

  /** Randomized round-robin: every live member once per round, in a fresh order. */
  #newProbeRound(): void {
    this.#table.forget(this.#config.deadRetainMs);
    const order = this.#table.peers.filter(isLive);
    for (let i = order.length - 1; i > 0; i -= 1) {
      const j = Math.floor(this.#env.random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    this.#probeOrder = order;
    this.#probeIndex = 0;
  }

  // Refutation, local health ------------------------------------------------------------

  #refute(accusedIncarnation: number): void {
    this.#table.bumpSelf(accusedIncarnation);
    this.#enqueue(this.#selfUpdate());
    this.#adjustAwareness(1);
  }

  /** Called when a timer fires late enough to prove this node itself was stopped. */
  #noteStall(): void {
    const now = this.#env.now();
    const newStall = now >= this.#stallGraceUntil;
    this.#lastStallAt = now;
    this.#stallGraceUntil = now + this.#config.probeIntervalMs;
    // Peers have probably suspected us meanwhile: refute before they ask.
    if (newStall && this.#phase === "running") this.#refute(this.#table.self.incarnation);
  }

  #adjustAwareness(delta: number): void {
    const max = this.#config.awarenessMax - 1;
    this.#awareness = Math.min(max, Math.max(0, this.#awareness + delta));
  }

  // Gossip ------------------------------------------------------------------------------

  #enqueue(update: Update): void {
    this.#queue.enqueue(update);
    this.#armGossip();
  }

  #armGossip(): void {
    if (this.#gossipTimer !== null || this.#phase === "new" || this.#phase === "stopped") return;
    const intervalMs = this.#config.gossipIntervalMs;
    const now = this.#env.now();
    const rounds = Math.floor((now - this.#gossipPhaseMs) / intervalMs) + 1;
    const delayMs = this.#gossipPhaseMs + rounds * intervalMs - now;
    this.#gossipTimer = this.#after(delayMs, () => this.#gossipTick());
  }

  /** One gossip round; the timer is re-armed only while updates wait, so idle is free. */
  #gossipTick(): void {
    this.#gossipTimer = null;
    if (this.#phase === "leaving" && !this.#queue.has(this.#id)) {
      this.stop();
      return;
    }
    if (this.#queue.size === 0) return;
    const now = this.#env.now();
    const deadWindowMs = this.#config.gossipToTheDeadMs;
    const targets = this.#randomPeers(
      this.#config.gossipFanout,
      (m) => isLive(m) || (m.status === "dead" && now - m.since <= deadWindowMs),
    );
    for (const target of targets) {
      const message: DatagramMessage = { type: "gossip", source: this.#id, updates: [] };
      this.#fill(message);
      if (message.updates.length === 0) break;
      this.#env.send(target.address, message);
    }
    if (targets.length > 0 && this.#queue.size > 0) this.#armGossip();
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
    const limit = transmitLimit(this.#config, this.#table.live);
    const countMax = updatesPerMessageMax - message.updates.length;
    for (const update of this.#queue.take(budgetBytes, limit, countMax)) {
      message.updates.push(update);
    }
  }

  #send(to: string, message: DatagramMessage, options?: SendOptions) {
    this.#fill(message, options?.first, options?.piggyback ?? true);
    if (options?.stream) {
      this.#env.sendReliable(to, message);
    } else {
      this.#env.send(to, message);
    }
  }

  // Push-pull, join ---------------------------------------------------------------------

  /**
   * The first push-pull falls at `phase` (random) of the interval scaled to the cluster
   * size, which is only known once joined; without this, every member of a large cluster
   * started at once would push-pull within the first base interval.
   */
  #firstPushPull(phase: number): void {
    const startedAt = this.#table.self.since;
    const dueMs = startedAt + phase * pushPullIntervalFor(this.#config, this.#table.live);
    const now = this.#env.now();
    if (dueMs > now) {
      this.#after(dueMs - now, () => this.#pushPullTick());
    } else {
      this.#pushPullTick();
    }
  }

  #pushPullTick(): void {
    if (this.#phase !== "running") return;
    const [partner] = this.#randomPeers(1, (m) => m.status === "alive");
    if (partner !== undefined) {
      this.#env.sendReliable(partner.address, this.#pushPull("request", false));
    }
    // Serf's reconnect: retry dead members, at a rate that keeps the cluster-wide total
    // near one attempt per dead member per interval, so a healed partition merges back.
    const dead = this.#table.peers.filter((m) => m.status === "dead");
    if (dead.length > 0 && this.#env.random() < dead.length / Math.max(1, this.#table.live - 1)) {
      const member = dead[Math.floor(this.#env.random() * dead.length)];
      this.#env.sendReliable(member.address, this.#pushPull("request", false));
    }
    const intervalMs = pushPullIntervalFor(this.#config, this.#table.live);
    this.#after(intervalMs, () => this.#pushPullTick());
  }

  #onPushPull(m: PushPullMessage): void {
    // A join's answer is the cluster's own state: gossiping it again would tell everyone
    // what they know. Anything else we learn from a push-pull, gossip missed: spread it.
    const rebroadcast = m.phase === "request" || !m.join;
    for (const digest of m.members) this.#table.applyDigest(digest, m.source, rebroadcast);
    if (m.phase === "request") {
      this.#env.sendReliable(m.replyTo, this.#pushPull("response", m.join));
    } else if (m.join) {
      this.#joined = true;
    }
  }

  #join(seeds: string[], retryMs: number): void {
    for (const seed of seeds) this.#env.sendReliable(seed, this.#pushPull("request", true));
    this.#after(retryMs, () => {
      if (this.#joined || this.#phase !== "running") return;
      this.#join(seeds, Math.min(2 * retryMs, this.#config.pushPullIntervalMs));
    });
  }

  #pushPull(phase: "request" | "response", join: boolean): PushPullMessage {
    const members: MemberDigest[] = [];
    for (const m of this.#table.all()) {
      const { id, address, zone, weight, incarnation, status } = m;
      members.push({ id, address, zone, weight, incarnation, status });
    }
    const replyTo = this.#table.self.address;
    return { type: "push-pull", phase, join, source: this.#id, replyTo, members };
  }

  // Helpers -----------------------------------------------------------------------------

  /** What this node says about itself: alive, or left once leaving. */
  #selfUpdate(): Update {
    const { id, address, zone, weight, incarnation } = this.#table.self;
    if (this.#phase === "leaving") return { kind: "left", id, incarnation };
    return { kind: "alive", id, address, zone, weight, incarnation };
  }

  #notify(member: Member): void {
    if (this.#listeners.length === 0) return;
    const state = stateOf(member);
    for (const listener of this.#listeners) listener(state);
  }

  /** Up to `count` distinct random peers that `accept` takes (memberlist's kRandomNodes). */
  #randomPeers(count: number, accept: (member: Member) => boolean): Member[] {
    const peers = this.#table.peers;
    const chosen: Member[] = [];
    for (let tries = 0; tries < 3 * peers.length && chosen.length < count; tries += 1) {
      const member = peers[Math.floor(this.#env.random() * peers.length)];
      if (accept(member) && !chosen.includes(member)) chosen.push(member);
    }
    return chosen;
  }

  /** Schedules `fn`; a timer that fires late by more than the threshold reveals a stall. */
  #after(delayMs: number, fn: () => void): TimerHandle {
    assert(delayMs >= 0 && Number.isFinite(delayMs), `bad timer delay ${delayMs}`);
    const dueMs = this.#env.now() + delayMs;
    const handle = this.#env.schedule(delayMs, () => {
      this.#timers.delete(handle);
      if (this.#phase === "stopped") return;
      if (this.#env.now() - dueMs > this.#config.stallThresholdMs) this.#noteStall();
      fn();
    });
    this.#timers.add(handle);
    return handle;
  }

  #cancel(timer: TimerHandle): void {
    timer.cancel();
    this.#timers.delete(timer);
  }
}

function stateOf(member: Member): MemberState {
  return {
    id: member.id,
    address: member.address,
    zone: member.zone,
    weight: member.weight,
    incarnation: member.incarnation,
    status: member.status,
    since: member.since,
  };
}
