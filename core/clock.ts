/**
 * Time as the cluster and the store see it: a monotonic clock and sleeping on
 * it. Production uses `systemClock` (system_env.ts); the deterministic simulation
 * passes a virtual one, so the same seed gives the same run.
 *
 * @module
 */

/** A monotonic clock in milliseconds, and timers on it. */
export interface Clock {
  /** Milliseconds on a monotonic clock (only differences mean anything). */
  now(): number;
  /**
   * Resolves after `ms`; when `signal` aborts first, rejects with its reason
   * and holds no timer any longer (a process can exit, a test ends clean).
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}
