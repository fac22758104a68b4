/**
 * Refused cluster messages, as an operator sees them: counts by reason, the
 * peers refused lately, and one log line per peer and reason at most once a
 * minute ("refusing messages from 10.0.0.2:7946: clock 600 s ahead of ours").
 */
import { assert } from "../../core/assert.ts";
import { systemClock, wallClockMs } from "../../core/mod.ts";
import { type RefusalError, type RefusalReason, refusalReasons } from "./auth.ts";
import { logger } from "../../log/mod.ts";

const log = logger("cluster");

/** Peers whose refusals are kept (the least recently refused is forgotten first). */
export const refusalPeersMax = 256;
/** Shortest pause between two log lines about one peer and one reason. */
export const refusalLogIntervalMs = 60_000;

/** The last refusal of messages from one peer. */
export interface PeerRefusal {
  reason: RefusalReason;
  /** Messages refused from this peer, all reasons together. */
  count: number;
  /** Wall clock of the last refusal (ms since the epoch). */
  lastAtMs: number;
  /** Measured clock skew (theirs minus ours), when the last message told it. */
  skewMs?: number;
}

/** {@linkcode Refusals.status} as JSON. */
export interface RefusalStatus {
  byReason: Record<RefusalReason, number>;
  peers: {
    address: string;
    reason: RefusalReason;
    count: number;
    lastAt: string;
    skewMs?: number;
  }[];
}

/** Clocks and log of {@linkcode Refusals} (tests replace them). */
export interface RefusalsOptions {
  log?: (line: string) => void;
  wallClock?: () => number;
  monotonicClock?: () => number;
}

/** Counts and logs refused messages. */
export class Refusals {
  readonly byReason = Object.fromEntries(refusalReasons.map((reason) => [reason, 0])) as Record<
    RefusalReason,
    number
  >;
  readonly peers = new Map<string, PeerRefusal>();
  /** Per peer, when each reason was last logged (monotonic ms); evicted with `peers`. */
  #loggedAtMs = new Map<string, Partial<Record<RefusalReason, number>>>();
  #log: (line: string) => void;
  #wallClock: () => number;
  #monotonicClock: () => number;

  constructor(options: RefusalsOptions = {}) {
    this.#log = options.log ?? ((line) => log.warn("{line}", { line }));
    this.#wallClock = options.wallClock ?? wallClockMs;
    this.#monotonicClock = options.monotonicClock ?? systemClock.now;
  }

  /** Counts a message refused from `peer` (HOST:PORT, or HOST when its port is unknown). */
  record(peer: string, refusal: RefusalError): void {
    this.byReason[refusal.reason]++;
    const entry = this.peers.get(peer) ?? { reason: refusal.reason, count: 0, lastAtMs: 0 };
    entry.reason = refusal.reason;
    entry.count++;
    entry.lastAtMs = this.#wallClock();
    if (refusal.sender.skewMs !== undefined) entry.skewMs = Math.round(refusal.sender.skewMs);
    this.peers.delete(peer); // re-inserted last: the first key is the least recently refused
    this.peers.set(peer, entry);
    const logged = this.#loggedAtMs.get(peer) ?? {};
    this.#loggedAtMs.delete(peer);
    this.#loggedAtMs.set(peer, logged);
    while (this.peers.size > refusalPeersMax) {
      const oldest = this.peers.keys().next().value!;
      this.peers.delete(oldest);
      this.#loggedAtMs.delete(oldest);
    }
    assert(this.#loggedAtMs.size === this.peers.size);
    // An unknown session is routine (once per peer after this process restarts) and
    // healed at once by the peer, so it is counted but not logged.
    if (refusal.reason === "session") return;
    const nowMs = this.#monotonicClock();
    const lastMs = logged[refusal.reason];
    if (lastMs !== undefined && nowMs - lastMs < refusalLogIntervalMs) return;
    logged[refusal.reason] = nowMs;
    this.#log(`refusing messages from ${peer}: ${refusal.detail}`);
  }

  /** Counts by reason and the peers refused lately, most recent first. */
  status(): RefusalStatus {
    return {
      byReason: { ...this.byReason },
      peers: [...this.peers].reverse().map(([address, entry]) => ({
        address,
        reason: entry.reason,
        count: entry.count,
        lastAt: new Date(entry.lastAtMs).toISOString(),
        ...(entry.skewMs === undefined ? {} : { skewMs: entry.skewMs }),
      })),
    };
  }
}
