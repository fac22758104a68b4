/**
 * CASPaxos (Rystsov, 2018): a replicated register per key, changed by a function
 * in one Paxos round (prepare, then accept) against a majority of acceptors; no
 * log. Volume records, maps and leases change only through it, so two nodes can
 * never both win a compare-and-set.
 *
 * The acceptor side and the proposer side are separate; transport is a parameter
 * (`AcceptorLink`), so tests run any number of acceptors in process with faults.
 */
import { assert } from "../core/assert.ts";
import { KeyedMutex } from "../core/_mutex.ts";

/** A proposal number: counter first, proposer id to break ties. */
export interface Ballot {
  counter: number;
  node: string;
}

/** The register's value: `version` 0 with `value` null means absent. */
export interface Register {
  version: number;
  value: Uint8Array | null;
  /**
   * Id of the change that wrote it. A change whose accept reached only some
   * acceptors may be adopted by another proposer; its own retry then finds its
   * id here and stops, instead of applying the change twice.
   */
  change?: string;
}

/** What an acceptor keeps per key, durably. */
export interface AcceptorState {
  promised: Ballot | null;
  accepted: Ballot | null;
  register: Register;
}

/** Durable storage of acceptor states (the local engine's metadata in a node). */
export interface AcceptorStore {
  load(key: string): Promise<AcceptorState | null>;
  save(key: string, state: AcceptorState): Promise<void>;
}

/** The answer to a prepare: a promise with what was accepted, or a refusal. */
export type PrepareReply =
  | { ok: true; accepted: Ballot | null; register: Register }
  | { ok: false; promised: Ballot };

/** The answer to an accept. */
export type AcceptReply = { ok: true } | { ok: false; promised: Ballot };

/** What an acceptor last accepted, without any promise (a read's fast path). */
export interface PeekReply {
  accepted: Ballot | null;
  register: Register;
}

/** A way to reach one acceptor (in process, or over RPC). */
export interface AcceptorLink {
  prepare(key: string, ballot: Ballot): Promise<PrepareReply>;
  accept(key: string, ballot: Ballot, register: Register): Promise<AcceptReply>;
  /** Optional: links without it make every read a full round. */
  peek?(key: string): Promise<PeekReply>;
}

/** Rounds a change may take before it gives up (contention or no majority). */
export const changeAttemptsMax = 24;
/**
 * Upper bound of the random pause before the second attempt, doubled for each
 * later one: a round takes a few milliseconds on a LAN, so one or two rounds'
 * worth of pause separates contenders without idling.
 */
export const retryPauseMsMax = 10;

/** No majority answered, or contention outlasted the attempts. */
export class NoQuorumError extends Error {
  override name = "NoQuorumError";
}

/** Orders ballots: negative when a < b. Null is below every ballot. */
export function compareBallots(a: Ballot | null, b: Ballot | null): number {
  if (a === null || b === null) return (a === null ? 0 : 1) - (b === null ? 0 : 1);
  if (a.counter !== b.counter) return a.counter - b.counter;
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0;
}

const absent: Register = { version: 0, value: null };

/** The acceptor role: promises and accepts, durably, one key at a time. */
export class Acceptor {
  #store: AcceptorStore;
  #locks = new KeyedMutex();

  constructor(store: AcceptorStore) {
    this.#store = store;
  }

  /** Promises to ignore ballots below `ballot`, and tells what it accepted. */
  prepare(key: string, ballot: Ballot): Promise<PrepareReply> {
    return this.#locks.run(key, async () => {
      const state = await this.#load(key);
      if (state.promised !== null && compareBallots(ballot, state.promised) < 0) {
        return { ok: false, promised: state.promised };
      }
      // A repeated prepare with the same ballot is answered the same way.
      if (compareBallots(ballot, state.promised) > 0) {
        await this.#store.save(key, { ...state, promised: ballot });
      }
      return { ok: true, accepted: state.accepted, register: state.register };
    });
  }

  /** What it accepted last; promises nothing and writes nothing. */
  peek(key: string): Promise<PeekReply> {
    return this.#locks.run(key, async () => {
      const state = await this.#load(key);
      return { accepted: state.accepted, register: state.register };
    });
  }

  /** Accepts `register` unless it promised a higher ballot. */
  accept(key: string, ballot: Ballot, register: Register): Promise<AcceptReply> {
    return this.#locks.run(key, async () => {
      const state = await this.#load(key);
      if (state.promised !== null && compareBallots(ballot, state.promised) < 0) {
        return { ok: false, promised: state.promised };
      }
      await this.#store.save(key, { promised: ballot, accepted: ballot, register });
      return { ok: true };
    });
  }

  async #load(key: string): Promise<AcceptorState> {
    return await this.#store.load(key) ?? { promised: null, accepted: null, register: absent };
  }
}

/** The proposer role: runs changes against the acceptors of a key. */
export class Proposer {
  readonly node: string;
  #acceptorsOf: (key: string) => AcceptorLink[];
  #counter = 0;
  #changes = 0;
  #random: () => number;
  /** Changes of one key from this proposer run one at a time (they would only fight). */
  #locks = new KeyedMutex();
  /** A read queued behind other changes of its key: later readers share it. */
  #queuedReads = new Map<string, Promise<Register>>();

  constructor(
    node: string,
    acceptorsOf: (key: string) => AcceptorLink[],
    random: () => number = Math.random,
  ) {
    this.node = node;
    this.#acceptorsOf = acceptorsOf;
    this.#random = random;
  }

  /**
   * Applies `change` to the register at `key` and returns the new register.
   * `change` may throw to abort (e.g. a version mismatch): nothing is written
   * then, and the error propagates. With `ready`, the first prepare overlaps it
   * and `change` runs only once it resolved (a caller's other work hides a round).
   */
  change(
    key: string,
    change: (current: Register) => Register,
    ready?: Promise<unknown>,
  ): Promise<Register> {
    return this.#locks.run(key, () => this.#change(key, change, ready));
  }

  async #change(
    key: string,
    change: (current: Register) => Register,
    ready?: Promise<unknown>,
  ): Promise<Register> {
    const acceptors = this.#acceptorsOf(key);
    assert(acceptors.length > 0, `no acceptors for ${key}`);
    const quorum = Math.floor(acceptors.length / 2) + 1;
    const id = `${this.node}/${++this.#changes}`;
    for (let attempt = 0; attempt < changeAttemptsMax; attempt++) {
      if (attempt > 0) await pause(this.#random() * retryPauseMsMax * 2 ** Math.min(attempt, 5));
      const ballot = { counter: ++this.#counter, node: this.node };
      const preparing = gather(acceptors.map((acceptor) => acceptor.prepare(key, ballot)));
      if (attempt === 0 && ready !== undefined) await Promise.all([ready, preparing]);
      const prepared = await preparing;
      const promises = prepared.filter((reply) => reply.ok);
      this.#learn(prepared);
      if (promises.length < quorum) continue;
      let current: { accepted: Ballot | null; register: Register } = {
        accepted: null,
        register: absent,
      };
      for (const promise of promises) {
        if (compareBallots(promise.accepted, current.accepted) > 0) current = promise;
      }
      if (current.register.change === id) return current.register;
      const next = { ...change(current.register), change: id };
      const accepted = await gather(
        acceptors.map((acceptor) => acceptor.accept(key, ballot, next)),
      );
      this.#learn(accepted);
      if (accepted.filter((reply) => reply.ok).length >= quorum) return next;
    }
    throw new NoQuorumError(
      `Cannot change ${key}: no majority of ${acceptors.length} acceptors after ${changeAttemptsMax} rounds`,
    );
  }

  /**
   * Reads the register, linearizably. Fast path: when a majority of acceptors
   * report the same accepted ballot, that value is chosen and no write completed
   * after it (a completed write would sit on a majority, hence on one of these).
   * Otherwise a full round that keeps the value ({@linkcode refresh}).
   */
  async read(key: string): Promise<Register> {
    const acceptors = this.#acceptorsOf(key);
    if (acceptors.length > 0 && acceptors.every((acceptor) => acceptor.peek !== undefined)) {
      const settled = await Promise.allSettled(acceptors.map((acceptor) => acceptor.peek!(key)));
      const peeks = settled.filter((result) => result.status === "fulfilled").map((result) =>
        (result as PromiseFulfilledResult<PeekReply>).value
      );
      const quorum = Math.floor(acceptors.length / 2) + 1;
      if (
        peeks.length >= quorum &&
        peeks.every((peek) => compareBallots(peek.accepted, peeks[0].accepted) === 0)
      ) {
        return peeks[0].register;
      }
    }
    return await this.refresh(key);
  }

  /**
   * Reads the register with a full round that writes it back to the acceptors
   * (so every acceptor of the key's current set holds it). Refreshes of a key
   * that arrive while one is still queued share it: it starts after all of them
   * were asked for.
   */
  refresh(key: string): Promise<Register> {
    const queued = this.#queuedReads.get(key);
    if (queued !== undefined) return queued;
    const read = this.#locks.run(key, () => {
      this.#queuedReads.delete(key);
      return this.#change(key, (current) => current);
    });
    this.#queuedReads.set(key, read);
    read.catch(() => {}).finally(() => {
      if (this.#queuedReads.get(key) === read) this.#queuedReads.delete(key);
    });
    return read;
  }

  #learn(replies: ({ ok: boolean; promised?: Ballot })[]): void {
    for (const reply of replies) {
      if (!reply.ok && reply.promised) {
        this.#counter = Math.max(this.#counter, reply.promised.counter);
      }
    }
  }
}

/** Settles every call; failed ones (unreachable acceptors) count as refusals. */
async function gather<T extends { ok: boolean }>(calls: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(calls);
  return settled.filter((result) => result.status === "fulfilled").map((result) =>
    (result as PromiseFulfilledResult<T>).value
  );
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
