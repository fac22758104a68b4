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

import { confirmationsWanted, type MembershipConfig, resolveConfig } from "./_membership_config.ts";
import { type Member, MemberTable } from "./_member_table.ts";
import { Prober } from "./_prober.ts";
import { Suspicions } from "./_suspicions.ts";
import { StallTimers } from "./_stall_timers.ts";
import { ProbeRounds } from "./_probe_rounds.ts";
import { Gossip } from "./_gossip.ts";
import { PushPull } from "./_push_pull.ts";
import {
  isStateOf,
  type MembershipEnv,
  type MemberState,
  stateOf,
  type TimerHandle,
} from "./_membership_env.ts";
import type { DatagramMessage, MemberInfo, Message, Update } from "./messages.ts";
import { isMemberInfo, parseMessage } from "./parse_messages.ts";

export type { MembershipConfig } from "./_membership_config.ts";
export { membershipConfigDefault, pushPullIntervalFor } from "./_membership_config.ts";
export type { MemberInfo, MemberStatus, Message, Update } from "./messages.ts";
export type { MembershipEnv, MemberState, TimerHandle } from "./_membership_env.ts";

type Phase = "new" | "running" | "leaving" | "stopped";

/** One node's SWIM membership; see the module documentation. */
export class Membership {
  readonly #env: MembershipEnv;
  readonly #config: MembershipConfig;
  readonly #table: MemberTable;
  /** The last members() answer, and the table's members it was made from, in its order. */
  #listed: { from: Member[]; states: MemberState[] } | null = null;
  readonly #prober: Prober;
  readonly #suspicions: Suspicions;
  readonly #timers: StallTimers;
  readonly #rounds: ProbeRounds;
  readonly #gossip: Gossip;
  readonly #pushPull: PushPull;
  readonly #listeners: ((member: MemberState) => void)[] = [];
  #phase: Phase = "new";

  constructor(self: MemberInfo, env: MembershipEnv, config?: Partial<MembershipConfig>) {
    if (!isMemberInfo(self)) {
      throw new TypeError(`Cannot create membership: invalid member info ${JSON.stringify(self)}`);
    }
    this.#env = env;
    const c = resolveConfig(config);
    this.#config = c;
    this.#timers = new StallTimers({
      config: c,
      env,
      stopped: () => this.#phase === "stopped",
      stalled: () => {
        if (this.#phase === "running") this.#refute(this.#table.self.incarnation);
      },
    });
    const after = (delayMs: number, fn: () => void) => this.#timers.after(delayMs, fn);
    const cancel = (timer: TimerHandle) => this.#timers.cancel(timer);
    const stalledSince = (time: number) => this.#timers.stalledSince(time);
    this.#prober = new Prober({
      config: c,
      selfId: self.id,
      selfAddress: self.address,
      now: () => env.now(),
      random: () => env.random(),
      after,
      cancel,
      send: (to, message, options) => this.#gossip.send(to, message, options),
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
      stallGraceUntil: () => this.#timers.graceUntil,
      declareDead: (member, incarnation) =>
        this.#table.apply({ kind: "dead", id: member.id, incarnation, from: this.#id }, true),
    });
    this.#table = new MemberTable(self, {
      now: () => env.now(),
      broadcast: (update) => this.#gossip.enqueue(update),
      changed: (member) => this.#notify(member),
      added: (member) => this.#rounds.add(member),
      refute: (incarnation) => this.#refute(incarnation),
      suspicionChanged: (member) => this.#suspicions.changed(member),
      suspicionEnded: (member) => this.#suspicions.ended(member),
      // Relaying confirmations helps only until they bring the timeout to its minimum
      // (memberlist's rule); beyond, each accuser still gossips its own accusation.
      relayConfirmation: (member, accuser) =>
        accuser === this.#id ||
        (member.accusers?.size ?? 0) <= confirmationsWanted(c, this.#table.live) + 1,
    });
    const host = {
      config: c,
      env,
      table: this.#table,
      selfId: self.id,
      running: () => this.#phase === "running",
      after,
      randomPeers: (count: number, accept: (member: Member) => boolean) =>
        this.#randomPeers(count, accept),
    };
    this.#rounds = new ProbeRounds({ ...host, prober: this.#prober, stalledSince });
    this.#gossip = new Gossip({
      ...host,
      active: () => this.#phase !== "new" && this.#phase !== "stopped",
      leaving: () => this.#phase === "leaving",
      stop: () => this.stop(),
    });
    this.#pushPull = new PushPull(host);
  }

  /** Joins through `seeds` (push-pull with each, retried until one answers) and starts. */
  start(seeds: string[]): void {
    if (this.#phase !== "new") throw new Error(`Cannot start membership: it is ${this.#phase}`);
    this.#phase = "running";
    const self = this.#table.self;
    self.since = this.#env.now();
    this.#notify(self);
    this.#gossip.enqueue(this.#selfUpdate());
    // Random phases, so that nodes started together do not probe and gossip in lockstep.
    this.#rounds.start();
    this.#pushPull.start();
    this.#gossip.start();
    const others = seeds.filter((address) => address !== self.address);
    if (others.length > 0) this.#pushPull.join(others);
  }

  /** Leaves gracefully: gossips "left" and stops once it has been sent (or after a drain). */
  leave(): void {
    if (this.#phase !== "running") return;
    this.#phase = "leaving";
    this.#table.leave();
    this.#gossip.enqueue(this.#selfUpdate());
    this.#timers.after(this.#config.leaveDrainMaxMs, () => this.stop());
  }

  /** Stops every timer; later messages are ignored. */
  stop(): void {
    this.#phase = "stopped";
    this.#timers.cancelAll();
    this.#gossip.stopped();
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
      this.#pushPull.receive(m);
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
    if (this.#gossip.queued > 0) this.#gossip.arm();
  }

  /**
   * Every known member, this node included, by id: frozen, and the same array
   * until the table changes (a write asked it several times, and copying and
   * sorting the table each time was a tenth of what a lease holder allocated).
   */
  members(): MemberState[] {
    if (this.#listed !== null && this.#listedCurrent(this.#listed)) return this.#listed.states;
    const from = [...this.#table.all()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const states = Object.freeze(from.map((member) => Object.freeze(stateOf(member))));
    this.#listed = { from, states: states as MemberState[] };
    return this.#listed.states;
  }

  /** True when `listed` still says what the table does: its members, and each one's state. */
  #listedCurrent(listed: { from: Member[]; states: MemberState[] }): boolean {
    if (listed.from.length !== this.#table.size) return false;
    for (let i = 0; i < listed.from.length; i++) {
      const member = listed.from[i];
      if (this.#table.get(member.id) !== member || !isStateOf(member, listed.states[i])) {
        return false;
      }
    }
    return true;
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
        this.#gossip.send(m.replyTo, { type: "ack", seq: m.seq, source: this.#id, updates: [] }, {
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
      this.#gossip.send(accuser.address, { type: "gossip", source: this.#id, updates: [] }, {
        first: answer,
      });
    }
  }

  #refute(accusedIncarnation: number): void {
    this.#table.bumpSelf(accusedIncarnation);
    this.#gossip.enqueue(this.#selfUpdate());
    this.#rounds.adjustAwareness(1);
  }

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
}
