/**
 * The simulated world of the metadata simulation: a virtual clock, one event
 * queue, seeded randomness, and a network of requests that can be lost,
 * duplicated, delayed (hence reordered), held by a paused node, or cut by a
 * partition (full or one-way). Every callback runs from the queue, and the
 * microtasks it starts run to completion before the next event, so the same
 * seed gives the same run.
 *
 * @module
 */
import { EventQueue, type QueuedEvent } from "./_event_queue.ts";
import { Random } from "./_sim_random.ts";
import { rpcTimeoutMsDefault } from "../transport/mod.ts";

interface SimEvent extends QueuedEvent {
  run: () => void;
  cancelled: boolean;
}

/** A request that was lost or not answered in time. */
export class SimTimeoutError extends Error {
  override name = "SimTimeoutError";
}

/** Network conditions, changed by the fault schedule as it runs. */
export interface NetConditions {
  lossRate: number;
  duplicateRate: number;
  delayMinMs: number;
  delayMaxMs: number;
}

/** Virtual time, the event queue and the network. */
export class SimWorld {
  readonly random: Random;
  readonly conditions: NetConditions = {
    lossRate: 0,
    duplicateRate: 0,
    delayMinMs: 0.2,
    delayMaxMs: 3,
  };
  /** Requests time out after this long without an answer. */
  readonly callTimeoutMs = 1000;
  #now = 0;
  #queue = new EventQueue<SimEvent>();
  /** Directed cuts: "a>b" drops what a sends to b. */
  #cuts = new Set<string>();
  /** A paused node's deliveries wait until this time. */
  #pausedUntil = new Map<string, number>();
  /** Current incarnation of each running node; absent when down. */
  #incarnations = new Map<string, number>();
  events = 0;

  constructor(seed: number) {
    this.random = new Random(seed, 1);
  }

  now(): number {
    return this.#now;
  }

  /** Runs `run` at `delayMs` from now; the returned function cancels it. */
  at(delayMs: number, run: () => void): () => void {
    const event: SimEvent = { time: this.#now + delayMs, seq: 0, index: -1, run, cancelled: false };
    this.#queue.push(event);
    return () => {
      event.cancelled = true;
    };
  }

  /**
   * A promise resolved after `ms` of virtual time (as a timer would), only if
   * `id` still runs as `incarnation` then: a crashed process's timers die with it.
   */
  sleep(id: string, incarnation: number, ms: number): Promise<void> {
    return new Promise((resolve) =>
      this.at(ms, () => {
        if (this.#incarnations.get(id) === incarnation) resolve();
      })
    );
  }

  /** Runs events until `untilMs`, draining microtasks after each one. */
  async run(untilMs: number): Promise<void> {
    while (this.#queue.size > 0 && this.#queue.peek()!.time <= untilMs) {
      const event = this.#queue.pop()!;
      this.#now = Math.max(this.#now, event.time);
      if (event.cancelled) continue;
      this.events++;
      event.run();
      await drain();
    }
    this.#now = Math.max(this.#now, untilMs);
  }

  /** Marks node `id` running as incarnation `incarnation` (null: down). */
  setIncarnation(id: string, incarnation: number | null): void {
    if (incarnation === null) this.#incarnations.delete(id);
    else this.#incarnations.set(id, incarnation);
  }

  incarnation(id: string): number | undefined {
    return this.#incarnations.get(id);
  }

  /** Cuts what `from` sends to `to` (one way) until `heal()`. */
  cut(from: string, to: string): void {
    this.#cuts.add(`${from}>${to}`);
  }

  /** Removes every cut. */
  heal(): void {
    this.#cuts.clear();
  }

  /** Holds deliveries to `id` for `ms` (a paused process). */
  pause(id: string, ms: number): void {
    this.#pausedUntil.set(id, this.#now + ms);
  }

  /**
   * Sends a request from incarnation `incarnation` of `from` to `to` and
   * resolves with what `handle` answers there, or rejects with SimTimeoutError
   * after `timeoutMs` (default {@linkcode callTimeoutMs}).
   * Nothing is sent or answered for an incarnation that is gone (a crashed
   * process's rounds just stop).
   */
  call<T>(
    from: string,
    incarnation: number,
    to: string,
    handle: () => Promise<T>,
    timeoutMs: number = this.callTimeoutMs,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#incarnations.get(from) !== incarnation) return;
      let settled = false;
      const cancelTimeout = this.at(timeoutMs, () => {
        if (settled || this.#incarnations.get(from) !== incarnation) return;
        settled = true;
        reject(new SimTimeoutError(`request from ${from} to ${to} timed out`));
      });
      const answer = (reply: T) => {
        this.#send(to, from, () => {
          if (settled || this.#incarnations.get(from) !== incarnation) return;
          settled = true;
          cancelTimeout();
          resolve(reply);
        });
      };
      const copies = this.random.next() < this.conditions.duplicateRate ? 2 : 1;
      for (let copy = 0; copy < copies; copy++) {
        this.#send(from, to, () => {
          const target = this.#incarnations.get(to);
          handle().then((reply) => {
            if (this.#incarnations.get(to) === target) answer(reply);
          }, () => {/* an error answer is as a lost one to the protocols here */});
        });
      }
    });
  }

  /** One message: lost, cut, or delivered after a delay (later when the receiver is paused). */
  #send(from: string, to: string, deliver: () => void): void {
    const { lossRate, delayMinMs, delayMaxMs } = this.conditions;
    if (this.random.next() < lossRate || this.#cuts.has(`${from}>${to}`)) return;
    const delay = delayMinMs + this.random.next() * (delayMaxMs - delayMinMs);
    this.at(delay, () => {
      if (this.#incarnations.get(to) === undefined || this.#cuts.has(`${from}>${to}`)) return;
      const heldMs = (this.#pausedUntil.get(to) ?? 0) - this.#now;
      if (heldMs > 0) this.at(heldMs, deliver);
      else deliver();
    });
  }
}

/** Resolves once every microtask queued so far (and those they queue) has run. */
function drain(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The simulated timeout of a call that asked for `timeoutMs`: the default
 * call's timeout (`callMs`, production's default divided by ten, as the dead
 * grace is) scaled alike for a longer one (a flush forwarded to a lease holder
 * waits several calls' timeouts); a shorter one keeps the default, as every
 * call had before calls took their timeout here (the regression seeds' schedules
 * stay as they were found).
 */
export function simCallTimeoutMs(callMs: number, timeoutMs: number | undefined): number {
  if (timeoutMs === undefined || timeoutMs <= rpcTimeoutMsDefault) return callMs;
  return callMs * timeoutMs / rpcTimeoutMsDefault;
}
