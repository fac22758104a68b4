/**
 * The probe schedule: one probe per probe interval, its targets in randomized round-robin
 * (every live member once per round, in a fresh order), each probe closed at the end of
 * its interval (ack, or suspicion), and Lifeguard's local health score (awareness), which
 * those outcomes move and which stretches the interval.
 *
 * @module
 */

import type { MembershipConfig } from "./_membership_config.ts";
import { isLive, type Member, type MemberTable } from "./_member_table.ts";
import type { Probe, Prober } from "./_prober.ts";
import type { MembershipEnv, TimerHandle } from "./_membership_env.ts";

/** What the probe schedule needs from its membership. */
export interface ProbeRoundsHost {
  readonly config: MembershipConfig;
  readonly env: MembershipEnv;
  readonly table: MemberTable;
  readonly prober: Prober;
  readonly selfId: string;
  /** True while membership runs (not before start, nor once leaving). */
  running(): boolean;
  after(delayMs: number, fn: () => void): TimerHandle;
  /** True when this node stalled after `time` (its probes since then prove nothing). */
  stalledSince(time: number): boolean;
}

/** The probe rounds of one membership; see the module documentation. */
export class ProbeRounds {
  readonly #host: ProbeRoundsHost;
  /** Lifeguard's local health score: 0 is healthy; probe intervals stretch by score + 1. */
  #awareness = 0;
  #probeOrder: Member[] = [];
  #probeIndex = 0;
  #probe: Probe | null = null;

  constructor(host: ProbeRoundsHost) {
    this.#host = host;
  }

  /** Schedules the first probe at a random phase of the interval. */
  start(): void {
    this.#host.after(
      this.#host.env.random() * this.#host.config.probeIntervalMs,
      () => this.#probeTick(),
    );
  }

  /**
   * A new member goes at a random place in what is left of the current round (memberlist
   * does likewise), so it is probed soon rather than only from every node's next round.
   */
  add(member: Member): void {
    const order = this.#probeOrder;
    const at = this.#probeIndex +
      Math.floor(this.#host.env.random() * (order.length - this.#probeIndex + 1));
    order.splice(at, 0, member);
  }

  adjustAwareness(delta: number): void {
    const max = this.#host.config.awarenessMax - 1;
    this.#awareness = Math.min(max, Math.max(0, this.#awareness + delta));
  }

  #probeTick(): void {
    this.#finishProbe();
    if (!this.#host.running()) return;
    const target = this.#nextProbeTarget();
    if (target !== null) this.#probe = this.#host.prober.start(target);
    const intervalMs = this.#host.config.probeIntervalMs * (this.#awareness + 1);
    this.#host.after(intervalMs, () => this.#probeTick());
  }

  /** Closes the previous probe at the end of its interval: ack, or suspicion. */
  #finishProbe(): void {
    const probe = this.#probe;
    this.#probe = null;
    if (probe === null) return;
    this.#host.prober.finish(probe);
    if (probe.acked) {
      this.adjustAwareness(-1);
      return;
    }
    // A probe that spanned a stall of this node proves nothing about the target.
    if (this.#host.stalledSince(probe.startedAt)) return;
    // Lifeguard: helpers that did not even nack point at our own network, not the target's.
    this.adjustAwareness(probe.helpers > 0 ? probe.helpers - probe.nacks : 1);
    const target = probe.target;
    if (!isLive(target)) return;
    this.#host.table.apply(
      { kind: "suspect", id: target.id, incarnation: probe.incarnation, from: this.#host.selfId },
      true,
    );
  }

  #nextProbeTarget(): Member | null {
    for (let pass = 0; pass < 2; pass += 1) {
      while (this.#probeIndex < this.#probeOrder.length) {
        const member = this.#probeOrder[this.#probeIndex++];
        if (isLive(member) && this.#host.table.get(member.id) === member) return member;
      }
      this.#newProbeRound();
    }
    return null;
  }

  /** Randomized round-robin: every live member once per round, in a fresh order. */
  #newProbeRound(): void {
    const table = this.#host.table;
    const env = this.#host.env;
    table.forget(this.#host.config.deadRetainMs, (id) => env.keepGone?.(id) === true);
    const order = table.peers.filter(isLive);
    for (let i = order.length - 1; i > 0; i -= 1) {
      const j = Math.floor(this.#host.env.random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    this.#probeOrder = order;
    this.#probeIndex = 0;
  }
}
