/** The acceptor role of CASPaxos (see `caspaxos.ts`). */
import { KeyedMutex, SharedMutex } from "../../core/_mutex.ts";
import {
  absent,
  type AcceptorState,
  type AcceptorStore,
  type AcceptReply,
  type Ballot,
  compareBallots,
  type ConfigHolder,
  type PeekReply,
  type PrepareReply,
  type Register,
  type StaleReply,
} from "./caspaxos.ts";
import type { MetaConfig } from "./config.ts";

/**
 * The acceptor role: promises and accepts, durably, one key at a time, for
 * messages of the newest configuration it knows.
 */
export class Acceptor {
  #store: AcceptorStore;
  #configs: ConfigHolder;
  #locks = new KeyedMutex();
  /**
   * Rounds hold it shared, a configuration install alone: no message that passed
   * the epoch check lands after a newer configuration was installed, so a change
   * of voters that installed it at a majority has stopped every older proposer.
   */
  #gate = new SharedMutex();

  constructor(store: AcceptorStore, configs: ConfigHolder) {
    this.#store = store;
    this.#configs = configs;
  }

  /** Promises to ignore ballots below `ballot`, and tells what it accepted. */
  prepare(key: string, ballot: Ballot, config: MetaConfig): Promise<PrepareReply> {
    return this.#admitted(ballot, config, () =>
      this.#locks.run(key, async () => {
        const state = await this.#load(key);
        if (state.promised !== null && compareBallots(ballot, state.promised) < 0) {
          return { ok: false, promised: state.promised };
        }
        // A repeated prepare with the same ballot is answered the same way.
        if (compareBallots(ballot, state.promised) > 0) {
          await this.#store.save(key, { ...state, promised: ballot });
        }
        return { ok: true, accepted: state.accepted, register: state.register };
      }));
  }

  /** What it accepted last; promises nothing and writes nothing. */
  peek(key: string, config: MetaConfig): Promise<PeekReply> {
    return this.#admitted(null, config, () =>
      this.#locks.run(key, async () => {
        const state = await this.#load(key);
        return { ok: true, accepted: state.accepted, register: state.register };
      }));
  }

  /** Accepts `register` unless it promised a higher ballot. */
  accept(
    key: string,
    ballot: Ballot,
    register: Register,
    config: MetaConfig,
  ): Promise<AcceptReply> {
    return this.#admitted(ballot, config, () =>
      this.#locks.run(key, async () => {
        const state = await this.#load(key);
        if (state.promised !== null && compareBallots(ballot, state.promised) < 0) {
          return { ok: false, promised: state.promised };
        }
        await this.#store.save(key, { promised: ballot, accepted: ballot, register });
        return { ok: true };
      }));
  }

  /** Runs `round` if `config` is the newest this node knows (installing it if newer). */
  async #admitted<T>(
    ballot: Ballot | null,
    config: MetaConfig,
    round: () => Promise<T>,
  ): Promise<T | StaleReply> {
    if (ballot !== null && ballot.epoch !== config.epoch) {
      throw new TypeError("Cannot take a ballot: its epoch is not its configuration's");
    }
    const known = this.#configs.current();
    if (known !== null && known.clusterId !== config.clusterId) {
      throw new TypeError("Cannot take a message of another cluster's configuration");
    }
    if (known === null || config.epoch > known.epoch) {
      await this.#gate.run(() => this.#configs.install(config));
    }
    return await this.#gate.runShared<T | StaleReply>(() => {
      const newest = this.#configs.current()!;
      if (config.epoch < newest.epoch) return { ok: false, stale: newest } as StaleReply;
      return round();
    });
  }

  async #load(key: string): Promise<AcceptorState> {
    return await this.#store.load(key) ?? { promised: null, accepted: null, register: absent };
  }
}
