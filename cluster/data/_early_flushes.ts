/**
 * Flushes a writer starts itself, ahead of its client's FLUSH, for volumes
 * whose client flushes after each write or two (a guest with `fsync=1`, a
 * database's commits). Without it such a write costs two round trips through
 * the replicas: the write's, then the FLUSH's, which asks each replica to make
 * the change durable once the client has heard the write and asked. Started
 * as the write's last replica answers, the flush's calls leave while the
 * write's answer goes to the client: the replicas' syncs and their answers
 * come back while the client's FLUSH is on its way, which then finds the
 * objects taken by a flush under way and waits for it alone (_unflushed.ts,
 * `take`).
 *
 * Nothing is promised by an early flush: it answers nobody. What it could not
 * do it leaves to the volume's own flush (`ObjectFlush.run` with `early`):
 * objects it fell short on stay short, losses it found stay to be reported.
 * It starts only when the volume's last flush came after at most
 * {@linkcode earlyWritesMax} writes and no other write of the volume is under
 * way (a stream at depth, whose flushes are rare, starts none); a write past
 * that many since the last flush ends the habit; at most one runs per volume.
 *
 * @module
 */
import { assert } from "../../core/assert.ts";

/** A volume whose flushes come after at most this many writes has early flushes. */
export const earlyWritesMax = 2;

interface Habit {
  /** Writes since the volume's last flush. */
  writes: number;
  /** Writes under way. */
  writing: number;
  /** The last flush came after at most `earlyWritesMax` writes. */
  flushesOften: boolean;
  /** An early flush runs. */
  running: boolean;
  /** Another node writes the volume now: its writes under way end here, and count for nothing. */
  forgotten: boolean;
}

/** See the module doc. */
export class EarlyFlushes {
  #habits = new Map<string, Habit>();
  readonly #start: (uid: string) => Promise<void>;
  #started = 0;

  /** `start(uid)`: runs an early flush of volume `uid` (never rejects). */
  constructor(start: (uid: string) => Promise<void>) {
    this.#start = start;
  }

  /** Early flushes started so far (for /metrics). */
  get started(): number {
    return this.#started;
  }

  /** A write of volume `uid` starts. */
  writing(uid: string): void {
    const habit = this.#habitOf(uid);
    habit.forgotten = false; // written here again
    habit.writing++;
  }

  /** That write ended (`ok`: it was acknowledged); starts an early flush when due. */
  wrote(uid: string, ok: boolean): void {
    const habit = this.#habits.get(uid);
    assert(habit !== undefined, `write of ${uid} ended without a habit`); // kept while writing
    habit.writing--;
    if (ok && !habit.forgotten && ++habit.writes > earlyWritesMax) {
      // Writes that no flush follows (the client stopped flushing) end the habit.
      habit.flushesOften = false;
    }
    if (!ok || !habit.flushesOften || habit.writing > 0 || habit.running) {
      this.#prune(uid, habit);
      return;
    }
    habit.running = true;
    this.#started++;
    this.#start(uid).finally(() => {
      habit.running = false;
      this.#prune(uid, habit);
    });
  }

  /** The volume's own flush starts (not an early one). */
  flushed(uid: string): void {
    const habit = this.#habitOf(uid);
    habit.flushesOften = habit.writes > 0 && habit.writes <= earlyWritesMax;
    habit.writes = 0;
    this.#prune(uid, habit);
  }

  /** Forgets volume `uid` (another node writes it now). */
  forget(uid: string): void {
    const habit = this.#habits.get(uid);
    if (habit === undefined) return;
    // Writes under way still end here: it stays until the last one has.
    habit.flushesOften = false;
    habit.writes = 0;
    habit.forgotten = true;
    this.#prune(uid, habit);
  }

  /** How many volumes have a habit kept (for tests: forgotten ones go once idle). */
  get kept(): number {
    return this.#habits.size;
  }

  /** Drops a habit that says nothing a new one would not (none kept for idle volumes). */
  #prune(uid: string, habit: Habit): void {
    if (habit.flushesOften || habit.writes > 0 || habit.writing > 0 || habit.running) return;
    if (this.#habits.get(uid) === habit) this.#habits.delete(uid);
  }

  #habitOf(uid: string): Habit {
    let habit = this.#habits.get(uid);
    if (habit === undefined) {
      habit = { writes: 0, writing: 0, flushesOften: false, running: false, forgotten: false };
      this.#habits.set(uid, habit);
    }
    return habit;
  }
}
