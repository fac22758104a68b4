/**
 * Peers that went silent: a link to them stayed unanswered even to a ping, or
 * a new one got no handshake (a stopped process, a host powered off, a cable
 * pulled: the address takes connections or drops packets, and answers
 * nothing). Every call to such a peer would wait its whole timeout, and the
 * cluster asks members gossip called dead for minutes afterwards (a look for
 * an object's newest copy asks them too, without counting their silence), so
 * every such look would take seconds, where a crashed process costs nothing
 * (its port refuses at once). Calls to a silent peer fail at once instead, as
 * unreachable, which every caller already handles as that peer's silence;
 * each silent peer is checked again every second with a new link's
 * handshake, and calls go through once it answers. One no call asked for in
 * ten minutes is forgotten (a member gone for good is not dialled forever).
 */
import { systemClock, systemTimers } from "../../core/mod.ts";

/** The peer did not answer in time (as opposed to refusing): it counts as silent. */
export class SilenceError extends Error {
  override name = "SilenceError";
}

/** True when `error` says a peer did not answer in time (a dial or handshake timeout, a ping). */
export function isSilence(error: unknown): boolean {
  return error instanceof SilenceError ||
    (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError"));
}

interface Silent {
  sinceMs: number;
  /** When a call was last refused for its silence (checks stop when nobody asks). */
  askedMs: number;
  checking: boolean;
}

/** A silent peer no call asked for this long is forgotten (a member gone for good). */
const unaskedForgetMs = 10 * 60_000;

/** See the module doc. */
export class SilentPeers {
  #peers = new Map<string, Silent>();
  #check: (address: string) => Promise<void>;
  #intervalMs: number;
  #stopTimer: (() => void) | null = null;

  /**
   * `check` opens a link to a silent peer (resolves once its handshake is
   * done); it runs at most once at a time per peer, every `intervalMs`.
   */
  constructor(check: (address: string) => Promise<void>, intervalMs = 1000) {
    this.#check = check;
    this.#intervalMs = intervalMs;
  }

  /** `address` did not answer: calls to it fail at once until a check hears it. */
  mark(address: string): void {
    if (this.#peers.has(address)) return;
    const now = systemClock.now();
    this.#peers.set(address, { sinceMs: now, askedMs: now, checking: false });
    this.#stopTimer ??= systemTimers.every(this.#intervalMs, () => this.#checkAll());
  }

  /** Why a call to `address` fails at once, or null when it may go. */
  silence(address: string): Error | null {
    const silent = this.#peers.get(address);
    if (silent === undefined) return null;
    silent.askedMs = systemClock.now();
    const seconds = ((silent.askedMs - silent.sinceMs) / 1000).toFixed(1);
    return new SilenceError(
      `silent for ${seconds} s (no answer, not even to a ping or a handshake; checked every ` +
        `${this.#intervalMs} ms)`,
    );
  }

  /** Stops checking (the client closed). */
  close(): void {
    this.#peers.clear();
    this.#stopTimer?.();
    this.#stopTimer = null;
  }

  #checkAll(): void {
    const now = systemClock.now();
    for (const [address, silent] of this.#peers) {
      if (silent.checking) continue;
      // Nobody calls it any more (a member gone for good): stop dialling it. A later
      // call goes out as to any peer, and marks it again if it is still silent.
      if (now - silent.askedMs > unaskedForgetMs) {
        this.#forget(address);
        continue;
      }
      silent.checking = true;
      this.#check(address).then(
        () => this.#forget(address),
        // A peer that refuses (its process is gone, its port closed) fails calls at
        // once by itself: only one that still does not answer stays silent here.
        (error) => isSilence(error) ? silent.checking = false : this.#forget(address),
      );
    }
  }

  #forget(address: string): void {
    this.#peers.delete(address);
    if (this.#peers.size === 0) {
      this.#stopTimer?.();
      this.#stopTimer = null;
    }
  }
}
