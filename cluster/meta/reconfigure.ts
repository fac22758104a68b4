/**
 * Changes of metadata voters, one at a time, safe under any interleaving of
 * joins, leaves, deaths and restarts (see `config.ts` for the argument):
 *
 * 1. commit the joint configuration (old voters + next voters) by a CAS of the
 *    configuration register, through the old configuration's quorum;
 * 2. install it at a majority of both groups: from then on no proposer of the
 *    older epoch can finish a round (its acceptors refuse it);
 * 3. refresh every key that a majority of the old voters holds (deleted ones
 *    too) through joint quorums, so a majority of the next voters holds it;
 * 4. commit and install the final configuration (next voters only).
 *
 * Any node may run a step (a CAS decides); the lowest-id live voter does, so
 * they rarely race. A manager that dies between steps leaves a joint
 * configuration that the next manager finishes.
 */
import { assert } from "../../core/assert.ts";
import { type Clock, systemClock } from "../../core/mod.ts";
import type { Proposer } from "./proposer.ts";
import {
  allVoters,
  type Candidate,
  configKey,
  decodeConfig,
  desiredVoters,
  encodeConfig,
  finalConfig,
  isQuorum,
  jointConfig,
  type MetaConfig,
  sameVoters,
} from "./config.ts";
import type { NodeConfig } from "./node_config.ts";

/** Keys refreshed at once while moving to new voters. */
export const keysMovedInFlightMax = 8;
/** Shortest pause between two requests for other members' configuration. */
export const configRefreshMsMin = 500;
/** A node asks others for a newer configuration at least this often. */
export const configRefreshMsMax = 5_000;
/** Pause between two steps of the reconfiguration loop. */
export const reconfigureIntervalMsDefault = 1_000;

/** A member as the reconfiguration sees it. */
export interface VoterCandidate extends Candidate {
  /** Where its cluster requests go; "" when unknown. */
  address: string;
}

/** What a reconfiguration asks of other members. */
export interface ConfigPeers {
  /** Every key the member's acceptor holds a state for. */
  keys(address: string): Promise<string[]>;
  /** Makes the member know `config`, durably. */
  install(address: string, config: MetaConfig): Promise<void>;
  /** The member's configuration. */
  configOf(address: string): Promise<MetaConfig | null>;
}

/** Options of {@linkcode Reconfigurer}. */
export interface ReconfigurerOptions {
  selfId: string;
  configs: NodeConfig;
  proposer: Proposer;
  /** Every member gossip knows, this node included. */
  members: () => VoterCandidate[];
  /** This node's own acceptor keys. */
  localKeys: () => string[];
  peers: ConfigPeers;
  /** Rate limits and the loop's pauses; the system's unless told (a simulation). */
  clock?: Clock;
  log?: (line: string) => void;
}

/** Figures for /v1/cluster. */
export interface ReconfigurationStatus {
  changes: number;
  keysMoved: number;
  lastError: string | null;
}

/** Runs changes of voters; see the module doc. */
export class Reconfigurer {
  readonly status: ReconfigurationStatus = { changes: 0, keysMoved: 0, lastError: null };
  #options: ReconfigurerOptions;
  #refreshedAt = -Infinity;
  #refreshing: Promise<void> | null = null;
  #clock: Clock;
  #stopping = new AbortController();
  #loop: Promise<void> | null = null;

  constructor(options: ReconfigurerOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
  }

  /** Ticks every `intervalMs` until stopped; failures are kept in `status.lastError`. */
  start(intervalMs = reconfigureIntervalMsDefault): void {
    this.#loop ??= (async () => {
      for (;;) {
        try {
          await this.#clock.sleep(intervalMs, this.#stopping.signal);
        } catch {
          return; // stopped
        }
        await this.tick().catch((error) => this.status.lastError = (error as Error).message);
      }
    })();
  }

  /** Stops the loop and waits for a step under way. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#loop;
  }

  /** One step: catch up, and if this node manages the voters, change them as needed. */
  async tick(): Promise<void> {
    const { configs } = this.#options;
    const now = this.#clock.now;
    const known = configs.newest();
    if (known === null || now() - this.#refreshedAt >= configRefreshMsMax) await this.refresh();
    const config = configs.newest();
    if (config === null || this.#manager(config) !== this.#options.selfId) return;
    try {
      if (config.next !== null) {
        await this.#finish(config);
        return;
      }
      const voters = desiredVoters(config.voters, this.#options.members());
      if (sameVoters(voters, config.voters)) return;
      // Gossip takes seconds to see a member dead: a new voter that died since would
      // hold the joint configuration back for good, so each must answer first.
      const silent = await this.#silent(voters.filter((id) => !config.voters.includes(id)));
      if (silent.length > 0) {
        throw new Error(
          `Cannot move metadata voters to ${voters} now: ${silent.join(", ")} did not answer`,
        );
      }
      const joint = jointConfig(config, voters);
      this.#log(`moving metadata voters from ${config.voters} to ${voters} (epoch ${joint.epoch})`);
      await this.#commit(config, joint);
      await this.#finish(joint);
    } catch (error) {
      const message = (error as Error).message;
      if (this.status.lastError !== message) this.#log(`metadata reconfiguration: ${message}`);
      this.status.lastError = message;
      throw error;
    }
  }

  /** The members of `ids` that do not answer a request for their configuration now. */
  async #silent(ids: string[]): Promise<string[]> {
    const byId = new Map(this.#options.members().map((member) => [member.id, member]));
    const answers = await Promise.allSettled(ids.map((id) => {
      const address = byId.get(id)?.address ?? "";
      if (address === "") return Promise.reject(new Error("no address"));
      return this.#options.peers.configOf(address);
    }));
    return ids.filter((_, i) => answers[i].status === "rejected");
  }

  /** Asks live members for their configuration and installs the newest (rate-limited). */
  refresh(): Promise<void> {
    if (this.#clock.now() - this.#refreshedAt < configRefreshMsMin) return Promise.resolve();
    return this.#refreshing ??= this.#refresh().finally(() => this.#refreshing = null);
  }

  async #refresh(): Promise<void> {
    const { configs, peers, selfId } = this.#options;
    this.#refreshedAt = this.#clock.now();
    const known = configs.newest();
    const voters = new Set(known === null ? [] : allVoters(known));
    const others = this.#options.members().filter((member) =>
      member.id !== selfId && member.status === "alive" && member.address !== ""
    ).sort((a, b) => Number(voters.has(b.id)) - Number(voters.has(a.id)));
    const answers = await Promise.allSettled(
      others.slice(0, 3).map((member) => peers.configOf(member.address)),
    );
    for (const answer of answers) {
      if (answer.status !== "fulfilled" || answer.value === null) continue;
      const clusterId = configs.identity.current();
      if (clusterId !== null && answer.value.clusterId !== clusterId) continue;
      await configs.learn(answer.value);
    }
  }

  /** The lowest-id alive voter: it runs changes. */
  #manager(config: MetaConfig): string | undefined {
    const alive = new Set(
      this.#options.members().filter((member) => member.status === "alive").map((m) => m.id),
    );
    return allVoters(config).find((id) => alive.has(id));
  }

  /** Steps 2–4 for a committed joint configuration. */
  async #finish(joint: MetaConfig): Promise<void> {
    assert(joint.next !== null, "only a joint configuration is finished");
    await this.#spread(joint, joint);
    const keys = await this.#keysOf(joint.voters);
    this.#log(`moving ${keys.length} metadata keys to voters ${joint.next}`);
    for (let i = 0; i < keys.length; i += keysMovedInFlightMax) {
      await Promise.all(
        keys.slice(i, i + keysMovedInFlightMax).map(async (key) => {
          await this.#options.proposer.refresh(key);
          this.status.keysMoved++;
        }),
      );
    }
    const final = finalConfig(joint);
    await this.#commit(joint, final);
    await this.#spread(joint, final);
    this.status.changes++;
    this.#log(`metadata voters are ${final.voters} (epoch ${final.epoch})`);
  }

  /** CAS of the configuration register from `from` to `to`, then installs `to` here. */
  async #commit(from: MetaConfig, to: MetaConfig): Promise<void> {
    await this.#options.proposer.change(configKey, (current) => {
      // The register is absent until the first change: the bootstrap configuration (epoch 1).
      const epoch = current.value === null ? 1 : decodeConfig(current.value).epoch;
      if (epoch !== from.epoch) {
        throw new Error(
          `Cannot change the metadata voters: the configuration is at epoch ${epoch}, not ${from.epoch}`,
        );
      }
      return { version: current.version + 1, value: encodeConfig(to) };
    });
    // Committed: known here from now on (saved when there is room; #spread counts
    // this node among those that have it only once it is saved).
    await this.#options.configs.learn(to);
  }

  /** Installs `config` at every reachable voter of it and of `previous`; needs a quorum of both. */
  async #spread(previous: MetaConfig, config: MetaConfig): Promise<void> {
    const { peers, selfId, configs } = this.#options;
    const byId = new Map(this.#options.members().map((member) => [member.id, member]));
    const voters = [...new Set([...allVoters(previous), ...allVoters(config)])];
    const results = await Promise.allSettled(voters.map(async (id) => {
      if (id === selfId) return await configs.install(config);
      const member = byId.get(id);
      if (member === undefined || member.address === "" || member.status === "dead") {
        throw new Error(`voter ${id} is not reachable`);
      }
      await peers.install(member.address, config);
    }));
    const installed = new Set(voters.filter((_, i) => results[i].status === "fulfilled"));
    if (!isQuorum(previous, installed) || !isQuorum(config, installed)) {
      throw new Error(
        `Cannot install metadata configuration epoch ${config.epoch}: ${installed.size} of ${voters.length} voters have it`,
      );
    }
  }

  /** Every key held by a majority of `voters` (deleted ones too), sorted. */
  async #keysOf(voters: string[]): Promise<string[]> {
    const { peers, selfId } = this.#options;
    const byId = new Map(this.#options.members().map((member) => [member.id, member]));
    const lists = await Promise.allSettled(voters.map(async (id) => {
      if (id === selfId) return this.#options.localKeys();
      const member = byId.get(id);
      if (member === undefined || member.address === "" || member.status === "dead") {
        throw new Error(`voter ${id} is not reachable`);
      }
      return await peers.keys(member.address);
    }));
    const answered = lists.filter((list) => list.status === "fulfilled");
    if (answered.length < Math.floor(voters.length / 2) + 1) {
      throw new Error(
        `Cannot list metadata keys: ${answered.length} of ${voters.length} old voters answered`,
      );
    }
    const keys = new Set<string>();
    for (const list of answered) for (const key of list.value) keys.add(key);
    return [...keys].sort();
  }

  #log(line: string): void {
    this.#options.log?.(line);
  }
}

/** Compares configurations for status pages: "epoch 4: a,b,c" or "epoch 5: a,b,c → a,b,d". */
export function describeConfig(config: MetaConfig | null): string {
  if (config === null) return "none (not joined)";
  const voters = config.voters.join(",");
  return config.next === null
    ? `epoch ${config.epoch}: ${voters}`
    : `epoch ${config.epoch}: ${voters} -> ${config.next.join(",")}`;
}
