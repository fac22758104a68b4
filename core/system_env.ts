/**
 * The real clock and randomness of this process, in one place. Cluster and
 * store code take a `Clock` and a random source as parameters and default to
 * these; the deterministic simulation passes its own, so nothing it runs
 * reaches the system's time or randomness by another way.
 *
 * @module
 */
import type { Clock } from "./clock.ts";

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

/**
 * Timers of this process, for code that keeps its own (the links between
 * members: deadlines of calls, sweeps of idle links). One place for them, as
 * for the clock: `after` runs `fn` once, `every` repeatedly; both answer a
 * function that cancels.
 */
export const systemTimers = {
  after(ms: number, fn: () => void): () => void {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
  every(ms: number, fn: () => void): () => void {
    const timer = setInterval(fn, ms);
    return () => clearInterval(timer);
  },
};

/** The wall clock (ms since the epoch): stamped on messages and shown, never used to time. */
export function wallClockMs(): number {
  return Date.now();
}

/** A uniform number in [0, 1) (backoff jitter, gossip choices). */
export function systemRandom(): number {
  return Math.random();
}

/** `count` bytes from the system's cryptographic random source (ids, nonces). */
export function randomBytes(count: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(count));
}

/** A random UUID (request id prefixes, boot ids). */
export function randomId(): string {
  return crypto.randomUUID();
}
