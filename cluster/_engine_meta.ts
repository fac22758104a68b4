/**
 * The metadata side of the cluster engine: one CASPaxos register per key, its
 * acceptors being the voters of the metadata configuration (meta/). Builds
 * the proposer and the changes of voters over the members, links to the
 * voters' acceptors, and answers the engine's metadata calls.
 */
import type { Clock, MetaEntry } from "../core/mod.ts";
import { VersionMismatchError } from "../core/mod.ts";
import {
  acceptedKeys,
  type Acceptor,
  type AcceptorIndex,
  type AcceptorLink,
  fetchConfig,
  installConfig,
  listChosenKeys,
  type NodeConfig,
  parseConfig,
  Proposer,
  Reconfigurer,
  rpcAcceptorLink,
} from "./meta/mod.ts";
import type { BlockPeer } from "./data/mod.ts";
import type { MemberState } from "./membership/mod.ts";
import type { RpcCaller } from "./transport/mod.ts";
import { metadataRoundDuration } from "../metrics/mod.ts";

/** Metadata keys read at once when listing. */
const listReadsInFlightMax = 16;

/** What {@linkcode EngineMeta} needs of its engine. */
export interface EngineMetaOptions {
  selfId: string;
  rpc: RpcCaller;
  nodeConfig: NodeConfig;
  /** This node's acceptor, and its states. */
  acceptor: Acceptor;
  acceptorStates: AcceptorIndex;
  /** The members as gossip knows them, this node included. */
  members: () => MemberState[];
  /** The member `id` as gossip knows it now. */
  member: (id: string) => MemberState | undefined;
  /** The clock of `members()`'s `since`. */
  now: () => number;
  deadGraceMs: number;
  /** Randomness of the proposer's backoff and name. */
  random: () => number;
  /** The clock of the proposer's backoff. */
  clock: Clock;
  /** Where the reconfiguration says what it does. */
  log?: (line: string) => void;
}

/** The metadata registers of one engine; see the module doc. */
export class EngineMeta {
  readonly proposer: Proposer;
  /** Changes of metadata voters; `tick()` it every second or so. */
  readonly reconfigurer: Reconfigurer;
  #options: EngineMetaOptions;
  #acceptorLinks = new Map<string, AcceptorLink>();

  constructor(options: EngineMetaOptions) {
    this.#options = options;
    const { nodeConfig, random, clock, rpc } = options;
    const selfId = options.selfId;
    this.proposer = new Proposer({
      // A name of its own per process: a restarted node never reuses its ballots' tiebreak.
      node: `${selfId}.${Math.floor(random() * 2 ** 32).toString(16).padStart(8, "0")}`,
      random,
      clock,
      configs: {
        // Where proposals go: the newest configuration, saved or only learned (a full disk).
        current: () => nodeConfig.newest(),
        install: (config) => nodeConfig.learn(config),
        refresh: () => this.reconfigurer.refresh(),
      },
      link: (id) => this.#voterLink(id),
    });
    this.reconfigurer = new Reconfigurer({
      selfId,
      configs: nodeConfig,
      proposer: this.proposer,
      members: () =>
        options.members().map((member) => ({
          id: member.id,
          zone: member.zone,
          address: member.id === selfId ? "" : member.address,
          status: member.status,
          withinGrace: member.status === "dead" &&
            options.now() - member.since < options.deadGraceMs,
        })),
      localKeys: () => options.acceptorStates.keys(""),
      peers: {
        keys: async (address) => {
          const reply = await rpc.call(address, "px.list", { header: { all: true } });
          if (!Array.isArray(reply.header.keys)) throw new TypeError("px.list: malformed reply");
          return reply.header.keys.map(String);
        },
        install: (address, config) => installConfig(rpc, address, config),
        configOf: (address) => fetchConfig(rpc, address),
      },
      clock,
      log: options.log,
    });
  }

  /** The value of `key` and its version; null when it has none. */
  async get(key: string): Promise<MetaEntry | null> {
    const startedMs = this.#options.now();
    const register = await this.proposer.read(key);
    this.#timed("read", startedMs);
    return register.value === null ? null : { version: register.version, value: register.value };
  }

  /** Sets `key` to `value` if it is at `expectedVersion`; its new version. */
  async put(key: string, value: Uint8Array, expectedVersion: number): Promise<number> {
    const startedMs = this.#options.now();
    const register = await this.proposer.change(key, (current) => {
      if (current.version !== expectedVersion) {
        throw new VersionMismatchError(
          `Cannot change ${key}: it is at version ${current.version}, not ${expectedVersion}`,
        );
      }
      return { version: current.version + 1, value };
    });
    this.#timed("change", startedMs);
    return register.version;
  }

  /** Deletes `key` if it is at `expectedVersion`. */
  async delete(key: string, expectedVersion: number): Promise<void> {
    await this.proposer.change(key, (current) => {
      if (current.value === null || current.version !== expectedVersion) {
        throw new VersionMismatchError(
          `Cannot delete ${key}: it is at version ${current.version}, not ${expectedVersion}`,
        );
      }
      return { version: 0, value: null };
    });
  }

  /**
   * The keys under `prefix` that have a value. `settled` (Engine.listMeta):
   * every voter must answer, so that a value a failed proposer left on a few
   * acceptors is seen and settled here, not chosen by a later read (seed
   * 410496 of the data-path simulation at 687b6de: an upload's image record,
   * accepted only by the uploader's own acceptor before it crashed, was chosen
   * by a read after a collection had swept the image's blocks).
   */
  async list(prefix: string, settled = false): Promise<string[]> {
    // Every key a quorum of the voters holds, or an error: never a partial list.
    const { nodeConfig } = this.#options;
    const { keys: candidates, partial } = await listChosenKeys({
      configs: {
        current: () => nodeConfig.newest(),
        install: (config) => nodeConfig.learn(config),
      },
      prefix,
      everyVoter: settled,
      ask: async (id) => {
        if (id === this.#options.selfId) {
          return {
            keys: await acceptedKeys(this.#options.acceptorStates, prefix),
            config: this.#options.nodeConfig.current(),
          };
        }
        const member = this.#options.member(id);
        if (member === undefined || (member.status !== "alive" && member.status !== "suspect")) {
          throw new Error(`voter ${id} is not live`);
        }
        const reply = await this.#options.rpc.call(member.address, "px.list", {
          header: { prefix },
        });
        if (!Array.isArray(reply.header.keys)) throw new TypeError("px.list: malformed reply");
        const known = reply.header.config;
        return {
          keys: reply.header.keys.map(String),
          config: known === undefined || known === null ? null : parseConfig(known),
        };
      },
    });
    // An acceptor that missed a delete still lists the key: read each through a quorum.
    // One only some voters hold is read with a full round: its value is then chosen
    // or superseded for good (a read's fast path may see a quorum without it).
    const keys: string[] = [];
    const present = async (key: string) =>
      (partial.has(key) ? await this.proposer.refresh(key) : await this.proposer.read(key))
        .value !== null;
    for (let i = 0; i < candidates.length; i += listReadsInFlightMax) {
      const batch = candidates.slice(i, i + listReadsInFlightMax);
      const found = await Promise.all(batch.map(present));
      keys.push(...batch.filter((_, j) => found[j]));
    }
    return keys;
  }

  /** Times a read or change that succeeded (failed ones say so in their error). */
  #timed(operation: "read" | "change", startedMs: number): void {
    metadataRoundDuration.observe({ operation }, (this.#options.now() - startedMs) / 1000);
  }

  /** The acceptor of voter `id`; null when gossip does not know it or knows it dead. */
  #voterLink(id: string): AcceptorLink | null {
    if (id === this.#options.selfId) return this.#options.acceptor;
    const member = this.#options.member(id);
    if (member === undefined || member.status === "dead" || member.status === "left") return null;
    return this.#acceptorLink({ id, address: member.address });
  }

  #acceptorLink(peer: BlockPeer): AcceptorLink {
    if (peer.id === this.#options.selfId) return this.#options.acceptor;
    let link = this.#acceptorLinks.get(`${peer.id} ${peer.address}`);
    if (link === undefined) {
      link = rpcAcceptorLink(this.#options.rpc, peer.address);
      this.#acceptorLinks.set(`${peer.id} ${peer.address}`, link);
    }
    return link;
  }
}
