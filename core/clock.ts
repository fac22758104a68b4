/**
 * Time as the cluster and the store see it: a monotonic clock and sleeping on
 * it. Production uses {@linkcode systemClock}; the deterministic simulation
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

/** The clock of this process: `performance.now()` and `setTimeout`. */
export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};
