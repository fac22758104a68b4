/**
 * Membership tunables, their defaults and why, and the pure formulas that scale them
 * with the cluster size (memberlist's, except where a comment says otherwise).
 *
 * @module
 */

import { assert } from "../../core/assert.ts";

/** Tunables of {@linkcode Membership}; every field has a default. */
export interface MembershipConfig {
  /** Time between two probes, and a probe's deadline (memberlist LAN: 1 s). */
  probeIntervalMs: number;
  /** Wait for a direct ack before asking helpers (memberlist LAN: 500 ms, a LAN RTT with room). */
  probeTimeoutMs: number;
  /** Helpers asked to ping a target that missed its direct ack (SWIM's k; memberlist: 3). */
  indirectProbes: number;
  /**
   * Also ping a silent target over a stream (memberlist's TCP fallback): a member whose
   * datagrams are lost but which is reachable is not suspected.
   */
  streamFallback: boolean;
  /** Suspicion timeout = this × max(1, log10 N) × probe interval (memberlist: 4). */
  suspicionMultiplier: number;
  /** Lifeguard: a suspicion starts at this × the timeout and shrinks with confirmations (6). */
  suspicionMaxMultiplier: number;
  /**
   * A member that stops for up to this long (stop-the-world pause, VM stun, SIGSTOP) is not
   * declared dead, unless every other live member has independently failed to reach it.
   * 0 turns the floor off (pure memberlist timing). See {@linkcode suspicionFloorMs}.
   */
  pauseToleranceMs: number;
  /**
   * Before declaring a suspect dead, a node probes it itself this many times, in the last
   * probe intervals of the suspicion, and needs all of them to fail (ours; see _suspicions.ts).
   * 0 turns verification off (memberlist's behaviour).
   */
  verifyProbes: number;
  /** Time between two gossip rounds while updates are queued (memberlist LAN: 200 ms). */
  gossipIntervalMs: number;
  /** Members each gossip round sends to (memberlist: 3). */
  gossipFanout: number;
  /**
   * An update is sent this × ceil(log10(N + 1)) times (memberlist: 4; ours 5, measured:
   * with 4, 2.3% of joins at N=50 missed at least one member, which then waited for a
   * push-pull (tens of seconds) and broke the p99 dissemination bound; with 5, 0.3%).
   */
  retransmitMultiplier: number;
  /** Full-state exchange with one random member, scaled up above 32 members (memberlist: 30 s). */
  pushPullIntervalMs: number;
  /** A dead member still receives gossip this long, to learn it must refute (memberlist: 30 s). */
  gossipToTheDeadMs: number;
  /** Lifeguard's local health multiplier: the probe interval stretches up to this × (8). */
  awarenessMax: number;
  /**
   * Dead and left members are kept (and dead ones retried, Serf's reconnect) this long, so a
   * partition of up to this length heals by itself (Serf's reconnect timeout: 24 h).
   */
  deadRetainMs: number;
  /** First retry of an unanswered join; doubles up to the push-pull interval. */
  joinRetryMs: number;
  /** A leaving member stops after its "left" has been sent enough, or after this long. */
  leaveDrainMaxMs: number;
  /**
   * A timer firing this late means this node itself was stopped: for one probe interval it
   * blames itself, not its peers (no suspicion from probes that spanned the stall, no death
   * declared), and refutes at once, since its peers have probably suspected it.
   */
  stallThresholdMs: number;
}

/**
 * The defaults: memberlist's LAN configuration, plus pause tolerance and verification, and
 * one more retransmission per decade of members (see each field).
 */
export const membershipConfigDefault: Readonly<MembershipConfig> = Object.freeze({
  probeIntervalMs: 1_000,
  probeTimeoutMs: 500,
  indirectProbes: 3,
  streamFallback: true,
  suspicionMultiplier: 4,
  suspicionMaxMultiplier: 6,
  pauseToleranceMs: 10_000,
  verifyProbes: 3,
  gossipIntervalMs: 200,
  gossipFanout: 3,
  retransmitMultiplier: 5,
  pushPullIntervalMs: 30_000,
  gossipToTheDeadMs: 30_000,
  awarenessMax: 8,
  deadRetainMs: 24 * 3600_000,
  joinRetryMs: 1_000,
  leaveDrainMaxMs: 2_000,
  stallThresholdMs: 500,
});

/**
 * Time a resumed member needs to read its backlog, refute, and have its "alive" reach its
 * accusers. Measured in the simulator at 100 members (bench/membership_sim.ts): in every
 * one of ~500 pauses, all members saw the resumed member alive again within 0.8 s; 2 s
 * leaves room for loss. The rare member that misses the refutation entirely is covered by
 * the verification probes (see _suspicions.ts), not by this allowance.
 */
export const refuteAllowanceMs = 2_000;

/** Cluster size above which the push-pull interval grows (memberlist's threshold). */
export const pushPullScaleThreshold = 32;

/** Validates `config` and returns it whole: a bad tunable is a programming error. */
export function resolveConfig(config: Partial<MembershipConfig> = {}): MembershipConfig {
  const c: MembershipConfig = { ...membershipConfigDefault, ...config };
  for (const [key, value] of Object.entries(c)) {
    if (typeof value === "boolean") continue;
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`Cannot configure membership: ${key} must be >= 0, got ${value}`);
    }
  }
  if (c.probeTimeoutMs <= 0 || c.probeTimeoutMs >= c.probeIntervalMs) {
    throw new RangeError(
      `Cannot configure membership: probeTimeoutMs (${c.probeTimeoutMs}) must be in (0, probeIntervalMs)`,
    );
  }
  if (c.suspicionMultiplier < 1 || c.suspicionMaxMultiplier < 1 || c.awarenessMax < 1) {
    throw new RangeError("Cannot configure membership: multipliers must be >= 1");
  }
  if (c.gossipIntervalMs <= 0 || c.gossipFanout < 1 || c.retransmitMultiplier < 1) {
    throw new RangeError("Cannot configure membership: gossip needs an interval and a fanout");
  }
  return c;
}

/** Lifeguard's shortest suspicion: suspicionMultiplier × max(1, log10 N) × probe interval. */
export function suspicionMinMs(c: MembershipConfig, members: number): number {
  const scale = Math.max(1, Math.log10(Math.max(1, members)));
  return c.suspicionMultiplier * scale * c.probeIntervalMs;
}

/**
 * The pause-tolerance floor under any suspicion not confirmed by every other live member:
 * the earliest a paused member can be suspected is one probe interval after it stops, and
 * it needs {@linkcode refuteAllowanceMs} after it resumes.
 */
export function suspicionFloorMs(c: MembershipConfig): number {
  if (c.pauseToleranceMs === 0) return 0;
  return c.pauseToleranceMs + refuteAllowanceMs - c.probeIntervalMs;
}

/**
 * Confirmations (accusers beyond the first) that bring a suspicion down to its minimum:
 * memberlist's suspicionMultiplier − 2, or none when the cluster cannot supply that many.
 */
export function confirmationsWanted(c: MembershipConfig, members: number): number {
  const wanted = Math.max(0, c.suspicionMultiplier - 2);
  return members - 2 < wanted ? 0 : wanted;
}

/**
 * Timeout of a suspicion, from its start, given its distinct accusers (Lifeguard's LHA
 * suspicion): from max down to min as log(confirmations + 1) / log(wanted + 1), never below
 * the pause floor unless `unanimous` (every other live member accused).
 */
export function suspicionTimeoutMs(
  c: MembershipConfig,
  members: number,
  accusers: number,
  unanimous: boolean,
): number {
  assert(accusers >= 1);
  const minMs = suspicionMinMs(c, members);
  const wanted = confirmationsWanted(c, members);
  let timeoutMs = minMs;
  if (wanted > 0) {
    const maxMs = c.suspicionMaxMultiplier * minMs;
    const confirmations = Math.min(accusers - 1, wanted);
    const fraction = Math.log(confirmations + 1) / Math.log(wanted + 1);
    timeoutMs = Math.max(minMs, Math.floor(maxMs - fraction * (maxMs - minMs)));
  }
  return unanimous ? timeoutMs : Math.max(timeoutMs, suspicionFloorMs(c));
}

/** Times each update is sent: retransmitMultiplier × ceil(log10(N + 1)). */
export function transmitLimit(c: MembershipConfig, members: number): number {
  return c.retransmitMultiplier * Math.max(1, Math.ceil(Math.log10(members + 1)));
}

/** Push-pull interval for N members: × (ceil(log2 N − log2 32) + 1) above 32 members. */
export function pushPullIntervalFor(c: MembershipConfig, members: number): number {
  if (members <= pushPullScaleThreshold) return c.pushPullIntervalMs;
  const multiplier = Math.ceil(Math.log2(members) - Math.log2(pushPullScaleThreshold)) + 1;
  return multiplier * c.pushPullIntervalMs;
}
