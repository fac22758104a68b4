/**
 * The I/O limiter of one volume on one node: token buckets for its limits
 * (qos.ts), shared by every NBD connection to the volume here, so that the
 * limits hold for their sum.
 *
 * A request of N bytes costs 1 token of each IOPS bucket it passes through
 * (its kind's and the total) and N of each bandwidth bucket. It goes at once
 * when every bucket holds what it needs, else it queues (one FIFO per kind, so
 * that a throttled write does not hold a read back) until the buckets refill;
 * one timer per limiter wakes the queue at the time its head can go, so that a
 * wait never spins and never holds anything but its own requests. A request
 * larger than a bucket goes once that bucket is full, and leaves it in debt:
 * later ones wait until the debt is paid, so the rate holds at any size.
 *
 * The NBD path asks `limited` first: with no limits, a request costs that one
 * read. With limits, `admit` is arithmetic on the buckets and allocates
 * nothing; only a request that must wait allocates (its place in the queue).
 *
 * @example
 * ```ts
 * const limiter = new IoLimiter({ iops: 500 });
 * if (limiter.limited && !limiter.admit("write", 4096)) await limiter.wait("write", 4096);
 * ```
 *
 * @module
 */
import { assert } from "./assert.ts";
import { qosBurstSecondsDefault } from "./limits.ts";
import { type QosRateKey, qosRateKeys, type VolumeQos } from "./qos.ts";
import { systemClock, systemTimers } from "./system_env.ts";

/** What a request does, as the limits see it. */
export type IoKind = "read" | "write";

/** The clock a limiter refills by, and the timer it wakes its queue with. */
export interface LimiterTimers {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Runs `fn` once after `ms`; answers a function that cancels it. */
  after(ms: number, fn: () => void): () => void;
}

const realTimers: LimiterTimers = { now: systemClock.now, after: systemTimers.after };

/** Tokens a bucket may miss and still count as holding what a request needs (float rounding). */
const levelSlack = 1e-6;

/** One limit: tokens refill at `perMs` up to `capacity`; `level` may go below zero (debt). */
class TokenBucket {
  constructor(readonly perMs: number, readonly capacity: number, public level: number) {}

  /** Tokens a request of `cost` needs in the bucket to go: all of it, or a full bucket. */
  need(cost: number): number {
    return Math.min(cost, this.capacity);
  }
}

/** A request waiting for tokens. */
interface Waiter {
  bytes: number;
  sinceMs: number;
  resolve: () => void;
  gone: boolean;
  /** Order of arrival across both queues. */
  seq: number;
}

/** Buckets a request of each kind passes through, by position: IOPS kind, IOPS total, bps kind, bps total. */
const slotsOf: Record<IoKind, readonly QosRateKey[]> = {
  read: ["iopsRead", "iops", "bpsRead", "bps"],
  write: ["iopsWrite", "iops", "bpsWrite", "bps"],
};

/** The token buckets of one volume on one node (see the module's comment). */
export class IoLimiter {
  #timers: LimiterTimers;
  #limits: VolumeQos = {};
  /** The buckets by rate key; a rate without a limit has none. */
  #buckets = new Map<QosRateKey, TokenBucket>();
  /** The same buckets in an array: refills loop over it without an iterator. */
  #bucketList: TokenBucket[] = [];
  /** Per kind, the four buckets of slotsOf (null where no limit), looked up once per change. */
  #path: Record<IoKind, (TokenBucket | null)[]> = { read: [], write: [] };
  #lastRefillMs: number;
  #queues: Record<IoKind, Waiter[]> = { read: [], write: [] };
  #seq = 0;
  #cancelTimer: (() => void) | null = null;
  #timerDueMs = Infinity;
  /** True while any limit is set: the NBD path asks this before anything else. */
  limited = false;
  /** Milliseconds requests spent waiting for tokens, summed over requests (for metrics). */
  throttledMs = 0;
  /** Requests that had to wait for tokens (not only behind others' that went at once). */
  throttledRequests = 0;

  constructor(limits: VolumeQos = {}, timers: LimiterTimers = realTimers) {
    this.#timers = timers;
    this.#lastRefillMs = timers.now();
    this.set(limits);
  }

  /** The limits enforced now. */
  get limits(): VolumeQos {
    return { ...this.#limits };
  }

  /** Requests waiting now. */
  get waiting(): number {
    return this.#queues.read.length + this.#queues.write.length;
  }

  /**
   * Enforces `limits` from now on (checked by checkQos). Buckets of rates kept
   * keep their tokens (up to their new size); new ones start full. Waiting
   * requests are looked at again at once: a raised limit lets them go sooner,
   * no limit lets them all go.
   */
  set(limits: VolumeQos): void {
    this.#refill();
    const buckets = new Map<QosRateKey, TokenBucket>();
    for (const key of qosRateKeys) {
      const rate = limits[key];
      if (rate === undefined) continue;
      const capacity = Math.max(1, limits[`${key}Burst`] ?? rate * qosBurstSecondsDefault);
      const level = Math.min(capacity, this.#buckets.get(key)?.level ?? capacity);
      buckets.set(key, new TokenBucket(rate / 1000, capacity, level));
    }
    this.#limits = { ...limits };
    this.#buckets = buckets;
    this.#bucketList = [...buckets.values()];
    for (const kind of ["read", "write"] as const) {
      this.#path[kind] = slotsOf[kind].map((key) => buckets.get(key) ?? null);
    }
    this.limited = buckets.size > 0;
    this.#stopTimer();
    this.#drain();
  }

  /**
   * Takes the tokens of a request of `kind` and `bytes` when it may go now
   * (true); false when it must wait (nothing taken: call wait()).
   */
  admit(kind: IoKind, bytes: number): boolean {
    // First come, first served: behind anyone queued (the queues share the total buckets).
    if (this.#queues.read.length + this.#queues.write.length > 0) return false;
    this.#refill();
    if (!this.#fits(kind, bytes, false)) return false;
    this.#take(kind, bytes);
    return true;
  }

  /** Resolves once a request of `kind` and `bytes` got its tokens, after those queued before it. */
  wait(kind: IoKind, bytes: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    const waiter = { bytes, sinceMs: this.#timers.now(), resolve, gone: false, seq: this.#seq++ };
    this.#queues[kind].push(waiter);
    this.#drain();
    if (!waiter.gone) this.throttledRequests++;
    return promise;
  }

  #refill(): void {
    const now = this.#timers.now();
    const elapsedMs = now - this.#lastRefillMs;
    this.#lastRefillMs = now;
    if (elapsedMs <= 0) return;
    const list = this.#bucketList;
    for (let index = 0; index < list.length; index++) {
      const bucket = list[index];
      bucket.level = Math.min(bucket.capacity, bucket.level + elapsedMs * bucket.perMs);
    }
  }

  /** True when the buckets hold what the request needs: all four, or the two totals (`sharedOnly`). */
  #fits(kind: IoKind, bytes: number, sharedOnly: boolean): boolean {
    const path = this.#path[kind];
    // Slots 1 and 3 are the totals, shared by both kinds (slotsOf).
    for (let slot = sharedOnly ? 1 : 0; slot < 4; slot += sharedOnly ? 2 : 1) {
      const bucket = path[slot];
      if (bucket === null) continue;
      if (bucket.level + levelSlack < bucket.need(slot < 2 ? 1 : bytes)) return false;
    }
    return true;
  }

  #take(kind: IoKind, bytes: number): void {
    const path = this.#path[kind];
    for (let slot = 0; slot < 4; slot++) {
      const bucket = path[slot];
      if (bucket !== null) bucket.level -= slot < 2 ? 1 : bytes;
    }
  }

  /** Milliseconds until the buckets hold what a request of `kind` and `bytes` needs. */
  #waitMs(kind: IoKind, bytes: number): number {
    const path = this.#path[kind];
    let waitMs = 0;
    for (let slot = 0; slot < 4; slot++) {
      const bucket = path[slot];
      if (bucket === null) continue;
      const missing = bucket.need(slot < 2 ? 1 : bytes) - bucket.level;
      if (missing > 0) waitMs = Math.max(waitMs, missing / bucket.perMs);
    }
    return waitMs;
  }

  /**
   * Lets queued requests go while they fit, the earlier head of the two queues
   * first; the later one goes past it only when the earlier waits for its own
   * kind's buckets, not the shared ones (taking from those would starve it).
   * Wakes again for the rest.
   */
  #drain(): void {
    this.#refill();
    const now = this.#timers.now();
    for (;;) {
      const read = this.#queues.read[0];
      const write = this.#queues.write[0];
      if (read === undefined && write === undefined) break;
      const readFirst = write === undefined || (read !== undefined && read.seq < write.seq);
      const [first, second] = readFirst ? ["read", "write"] as const : ["write", "read"] as const;
      let kind: IoKind | null = null;
      if (this.#fits(first, this.#queues[first][0].bytes, false)) kind = first;
      else if (
        this.#queues[second].length > 0 &&
        this.#fits(first, this.#queues[first][0].bytes, true) &&
        this.#fits(second, this.#queues[second][0].bytes, false)
      ) kind = second;
      if (kind === null) break;
      const head = this.#queues[kind].shift()!;
      this.#take(kind, head.bytes);
      this.throttledMs += now - head.sinceMs;
      head.gone = true;
      head.resolve();
    }
    let dueInMs = Infinity;
    for (const kind of ["read", "write"] as const) {
      const head = this.#queues[kind][0];
      if (head !== undefined) dueInMs = Math.min(dueInMs, this.#waitMs(kind, head.bytes));
    }
    if (dueInMs !== Infinity) this.#wakeIn(dueInMs);
  }

  /** Sets the one timer to fire in `ms` (rounded up), unless it fires sooner already. */
  #wakeIn(ms: number): void {
    assert(this.limited, "only a limited volume's requests wait");
    const delayMs = Math.max(1, Math.ceil(ms));
    const dueMs = this.#timers.now() + delayMs;
    if (this.#cancelTimer !== null && this.#timerDueMs <= dueMs) return;
    this.#stopTimer();
    this.#timerDueMs = dueMs;
    this.#cancelTimer = this.#timers.after(delayMs, () => {
      this.#cancelTimer = null;
      this.#timerDueMs = Infinity;
      this.#drain();
    });
  }

  #stopTimer(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = null;
    this.#timerDueMs = Infinity;
  }
}
