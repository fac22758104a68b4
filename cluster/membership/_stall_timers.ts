/**
 * Membership's timers: every one is cancelled when membership stops, and one that fires
 * later than the stall threshold reveals that this node itself was stopped (paused,
 * descheduled): membership then refutes at once and accuses nobody for a while.
 *
 * @module
 */

import { assert } from "../../core/assert.ts";
import type { MembershipConfig } from "./_membership_config.ts";
import type { MembershipEnv, TimerHandle } from "./_membership_env.ts";

/** What the timers need from their membership. */
export interface StallTimersHost {
  readonly config: MembershipConfig;
  readonly env: MembershipEnv;
  /** True once membership stopped: a timer that fires does nothing. */
  stopped(): boolean;
  /** A stall began that is not within the grace of the previous one. */
  stalled(): void;
}

/** The timers of one membership, and the stalls they reveal. */
export class StallTimers {
  readonly #host: StallTimersHost;
  readonly #timers = new Set<TimerHandle>();
  #lastStallAt = -Infinity;
  #stallGraceUntil = -Infinity;

  constructor(host: StallTimersHost) {
    this.#host = host;
  }

  /** True when this node stalled after `time` (its probes since then prove nothing). */
  stalledSince(time: number): boolean {
    return time <= this.#lastStallAt;
  }

  /** End of the grace that follows a stall of this node (no verdicts before). */
  get graceUntil(): number {
    return this.#stallGraceUntil;
  }

  /** Schedules `fn`; a timer that fires late by more than the threshold reveals a stall. */
  after(delayMs: number, fn: () => void): TimerHandle {
    const env = this.#host.env;
    assert(delayMs >= 0 && Number.isFinite(delayMs), `bad timer delay ${delayMs}`);
    const dueMs = env.now() + delayMs;
    const handle = env.schedule(delayMs, () => {
      this.#timers.delete(handle);
      if (this.#host.stopped()) return;
      if (env.now() - dueMs > this.#host.config.stallThresholdMs) this.#noteStall();
      fn();
    });
    this.#timers.add(handle);
    return handle;
  }

  cancel(timer: TimerHandle): void {
    timer.cancel();
    this.#timers.delete(timer);
  }

  /** Cancels every timer (membership stops). */
  cancelAll(): void {
    for (const timer of this.#timers) timer.cancel();
    this.#timers.clear();
  }

  /** Called when a timer fires late enough to prove this node itself was stopped. */
  #noteStall(): void {
    const now = this.#host.env.now();
    const newStall = now >= this.#stallGraceUntil;
    this.#lastStallAt = now;
    this.#stallGraceUntil = now + this.#host.config.probeIntervalMs;
    // Peers have probably suspected us meanwhile: refute before they ask.
    if (newStall) this.#host.stalled();
  }
}
