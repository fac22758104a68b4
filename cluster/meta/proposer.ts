/** The proposer role of CASPaxos (see `caspaxos.ts`). */
import { assert } from "../../core/assert.ts";
import { type Clock, systemClock, systemRandom } from "../../core/mod.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import {
  absent,
  type AcceptorLink,
  type Ballot,
  changeAttemptsMax,
  compareBallots,
  type ConfigHolder,
  NoQuorumError,
  NotJoinedError,
  type Register,
  retryPauseMsMax,
  type StaleReply,
} from "./caspaxos.ts";
import { allVoters, isQuorum, type MetaConfig } from "./config.ts";

/** What a proposer needs: who it is, its configuration, and its links. */
export interface ProposerOptions {
  /**
   * Unique to this process (member id and a boot id): ballots and change ids
   * start again from 1 after a restart, so a name used before a crash would
   * make two proposals with one ballot, or take a new change for an old one.
   */
  node: string;
  configs: ConfigHolder;
  /** The link to voter `id`; null when its address is not known (it counts as down). */
  link: (id: string) => AcceptorLink | null;
  /** Backoff jitter; the system's unless told (a simulation). */
  random?: () => number;
  /** Backoff pauses; the system's unless told (a simulation). */
  clock?: Clock;
}

/** The proposer role: runs changes against the acceptors of a key. */
export class Proposer {
  readonly node: string;
  #configs: ConfigHolder;
  #link: (id: string) => AcceptorLink | null;
  #counter = 0;
  #changes = 0;
  #random: () => number;
  #clock: Clock;
  /** Changes of one key from this proposer run one at a time (they would only fight). */
  #locks = new KeyedMutex();
  /** A read queued behind other changes of its key: later readers share it. */
  #queuedReads = new Map<string, Promise<Register>>();

  constructor(options: ProposerOptions) {
    this.node = options.node;
    this.#configs = options.configs;
    this.#link = options.link;
    this.#random = options.random ?? systemRandom;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Applies `change` to the register at `key` and returns the new register.
   * `change` may throw to abort (e.g. a version mismatch): nothing is written
   * then, and the error propagates. With `ready`, the first prepare overlaps it
   * and `change` runs only once it resolved (a caller's other work hides a round).
   */
  async change(
    key: string,
    change: (current: Register) => Register,
    ready?: Promise<unknown>,
  ): Promise<Register> {
    // Waited for below and its error propagates; when this change fails before
    // that (not joined, no quorum), nothing else would handle it, and an
    // unhandled rejection ends the process (seed 60030 with --boot-reads).
    ready?.catch(() => {});
    await this.#joined();
    return await this.#locks.run(key, () => this.#change(key, change, ready));
  }

  async #change(
    key: string,
    change: (current: Register) => Register,
    ready?: Promise<unknown>,
  ): Promise<Register> {
    const id = `${this.node}/${++this.#changes}`;
    let config = this.#config(key);
    let lastFailure = "no quorum answered";
    for (let attempt = 0, staleRetries = 0; attempt < changeAttemptsMax; attempt++) {
      if (attempt > 0) {
        await this.#clock.sleep(this.#random() * retryPauseMsMax * 2 ** Math.min(attempt, 5));
      }
      config = this.#config(key);
      const ballot = { epoch: config.epoch, counter: ++this.#counter, node: this.node };
      const preparing = this.#ask(config, (link) => link.prepare(key, ballot, config));
      if (attempt === 0 && ready !== undefined) await Promise.all([ready, preparing]);
      const prepared = await preparing;
      if (await this.#caughtUp(prepared.values())) {
        if (staleRetries++ < changeAttemptsMax) attempt--;
        continue;
      }
      const promises = [...prepared].filter(([, reply]) => reply.ok) as [
        string,
        { ok: true; accepted: Ballot | null; register: Register },
      ][];
      if (!isQuorum(config, new Set(promises.map(([voter]) => voter)))) {
        lastFailure = `${promises.length} of ${allVoters(config).length} voters promised`;
        await this.#configs.refresh?.();
        continue;
      }
      let current: { accepted: Ballot | null; register: Register } = {
        accepted: null,
        register: absent,
      };
      for (const [, promise] of promises) {
        if (compareBallots(promise.accepted, current.accepted) > 0) current = promise;
      }
      // This change may already sit on some acceptors (an earlier attempt's accept that
      // reached a few): then it is proposed again as it is, never applied a second time,
      // and it is done only once a quorum accepted it. A refresh, too, writes the register
      // back as it is, change id included (with the refresh's id instead, the writer of a
      // change adopted here would no longer recognize it, and apply it twice).
      const again = current.register.change === id || change === keep;
      const next = again ? current.register : { ...change(current.register), change: id };
      const accepted = await this.#ask(config, (link) => link.accept(key, ballot, next, config));
      if (await this.#caughtUp(accepted.values())) continue;
      const granted = new Set(
        [...accepted].filter(([, reply]) => reply.ok).map(([voter]) => voter),
      );
      if (isQuorum(config, granted)) return next;
      lastFailure = `${granted.size} of ${allVoters(config).length} voters accepted`;
    }
    throw new NoQuorumError(
      `Cannot change ${key}: ${lastFailure} (epoch ${config.epoch}) after ${changeAttemptsMax} rounds`,
    );
  }

  /**
   * Reads the register, linearizably. Fast path: when a quorum of acceptors
   * report the same accepted ballot, that value is chosen and no write completed
   * after it (a completed write would sit on a quorum, hence on one of these).
   * Otherwise a full round that keeps the value ({@linkcode refresh}).
   */
  async read(key: string): Promise<Register> {
    await this.#joined();
    const config = this.#config(key);
    const peeks = await this.#ask(config, (link) => {
      if (link.peek === undefined) return Promise.reject(new Error("no peek"));
      return link.peek(key, config);
    });
    if (!(await this.#caughtUp(peeks.values()))) {
      const answers = [...peeks].filter(([, reply]) => reply.ok) as [
        string,
        { ok: true; accepted: Ballot | null; register: Register },
      ][];
      if (
        answers.length > 0 && isQuorum(config, new Set(answers.map(([voter]) => voter))) &&
        answers.every(([, peek]) => compareBallots(peek.accepted, answers[0][1].accepted) === 0)
      ) {
        return answers[0][1].register;
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
      return this.#change(key, keep);
    });
    this.#queuedReads.set(key, read);
    read.catch(() => {}).finally(() => {
      if (this.#queuedReads.get(key) === read) this.#queuedReads.delete(key);
    });
    return read;
  }

  /** A node that just joined may not know the configuration yet: it asks once. */
  async #joined(): Promise<void> {
    if (this.#configs.current() === null) await this.#configs.refresh?.();
  }

  #config(key: string): MetaConfig {
    const config = this.#configs.current();
    if (config === null) {
      throw new NotJoinedError(
        `Cannot reach the metadata of ${key}: this node has not joined a cluster yet`,
      );
    }
    return config;
  }

  /**
   * Sends to every voter of `config`; answers by voter, unreachable ones left
   * out. Resolves as soon as the voters that answered ok form a quorum (the
   * round's outcome is decided then; the slowest voter only adds latency, and
   * still gets the request), or once every voter answered or failed.
   */
  #ask<T extends { ok: boolean }>(
    config: MetaConfig,
    call: (link: AcceptorLink) => Promise<T>,
  ): Promise<Map<string, T>> {
    const voters = allVoters(config);
    const replies = new Map<string, T>();
    const granted = new Set<string>();
    return new Promise((resolve) => {
      let pending = voters.length;
      const settle = () => {
        if (--pending === 0 || isQuorum(config, granted)) resolve(new Map(replies));
      };
      if (pending === 0) resolve(replies);
      // Later answers land in `replies` only: the caller has its copy.
      for (const voter of voters) {
        const link = this.#link(voter);
        (link === null ? Promise.reject(new Error("unknown address")) : call(link)).then(
          (reply) => {
            replies.set(voter, reply);
            if (reply.ok) granted.add(voter);
            const promised = (reply as { promised?: Ballot }).promised;
            if (!reply.ok && promised !== undefined && promised.epoch === config.epoch) {
              this.#counter = Math.max(this.#counter, promised.counter);
            }
            settle();
          },
          settle,
        );
      }
    });
  }

  /** Installs the newest configuration a reply names; true when there was one. */
  async #caughtUp(replies: Iterable<{ ok: boolean }>): Promise<boolean> {
    let newest: MetaConfig | null = null;
    for (const reply of replies) {
      const stale = (reply as Partial<StaleReply>).stale;
      if (stale !== undefined && (newest === null || stale.epoch > newest.epoch)) newest = stale;
    }
    if (newest === null) return false;
    const known = this.#configs.current();
    assert(known !== null, "a proposer that sent a round knows a configuration");
    if (newest.epoch > known.epoch) await this.#configs.install(newest);
    return true;
  }
}

/** The change of a refresh: none. */
function keep(current: Register): Register {
  return current;
}
