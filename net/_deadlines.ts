/**
 * Deadlines of many connections checked by one timer: a connection moves its
 * deadline at every phase (waiting for a head, reading a body, writing) by
 * assigning a number, which costs nothing per read or write, where a timer per
 * phase would cost a timer per 256 KiB of an upload.
 */

/** Something that ends itself when its deadline passes. */
export interface Expiring {
  /** `performance.now()` time after which `expire()` is called; Infinity for none. */
  deadlineMs: number;
  /** Called once the deadline passed (typically: close the connection). */
  expire(): void;
}

/** The set of expiring things of one listener, swept every `tickMs`. */
export class Deadlines {
  #entries = new Set<Expiring>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #tickMs: number;

  /** `tickMs` bounds how late an expiry may be. */
  constructor(tickMs: number) {
    this.#tickMs = tickMs;
  }

  /** Starts watching `entry` (the timer runs only while something is watched). */
  add(entry: Expiring): void {
    this.#entries.add(entry);
    this.#timer ??= setInterval(() => this.#sweep(), this.#tickMs);
  }

  /** Stops watching `entry`. */
  delete(entry: Expiring): void {
    this.#entries.delete(entry);
    if (this.#entries.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  #sweep(): void {
    const now = performance.now();
    for (const entry of this.#entries) {
      if (entry.deadlineMs > now) continue;
      this.delete(entry);
      entry.expire();
    }
  }
}
