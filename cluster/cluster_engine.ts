/**
 * The engine of a node in a cluster: the Engine interface over the members,
 * so the core (store, volumes, GC) runs unchanged on it.
 *
 * - Blocks go to the R replicas placement names and are durable on a majority
 *   when put() resolves; reads take the local copy or fetch, verify and keep one
 *   (block_service.ts).
 * - Objects are versioned on their R replicas (replicated_objects.ts).
 * - Metadata is one CASPaxos register per key, its acceptors being the voters
 *   of the metadata configuration, whatever R is (meta/).
 *
 * Placement runs over the members that are alive or suspect, and over dead ones
 * for `deadGraceMs` after they died: a flapping or restarting node moves no
 * data, and a dead one's share is re-replicated only after the grace period.
 */
import type { ByteRange, Clock, Engine, MetaEntry, NodeDisk } from "../core/mod.ts";
import { systemClock, systemRandom } from "../core/mod.ts";
import { VersionMismatchError } from "../core/mod.ts";
import {
  acceptedKeys,
  Acceptor,
  type AcceptorIndex,
  type AcceptorLink,
  acceptorMethods,
  fetchConfig,
  installConfig,
  listChosenKeys,
  type NodeConfig,
  parseConfig,
  Proposer,
  Reconfigurer,
  rpcAcceptorLink,
} from "./meta/mod.ts";
import { blockMethods, type BlockPeer, ReplicatedBlocks } from "./data/mod.ts";
import { type ObjectLink, objectMethods, ObjectReplica, rpcObjectLink } from "./data/mod.ts";
import { type JournalStore, ReplicatedObjects } from "./data/mod.ts";
import { Placement } from "./placement/mod.ts";
import { proposedFloors } from "./object_floors.ts";
import type { MemberState } from "./membership/mod.ts";
import type { RpcCaller, RpcMethod } from "./transport/mod.ts";

/** Replicas of each block, object and metadata key unless told (`--replicas`). */
export const replicasDefault = 3;
/** How long a dead member keeps its place before its data is re-replicated. */
export const deadGraceMsDefault = 60_000;
/** Metadata keys read at once when listing. */
const listReadsInFlightMax = 16;

/** Options of {@linkcode ClusterEngine}. */
export interface ClusterEngineOptions {
  selfId: string;
  /** This node's own disk (blocks and objects it holds as a replica). */
  local: NodeDisk;
  /** The journal of the objects it holds (journal_disk.ts beside the data; memory in a simulation). */
  journal: JournalStore;
  /** Journal bytes after which a checkpoint starts (the simulation makes it small). */
  journalCheckpointBytes?: number;
  /**
   * This node's acceptor states, durable when `save()` resolves (an AcceptorLog
   * beside the data; the simulation keeps them in memory).
   */
  acceptorStates: AcceptorIndex & { close(): void };
  rpc: RpcCaller;
  /** The members as gossip knows them, this node included. */
  members: () => MemberState[];
  /** The clock of `members()`'s `since`. */
  now: () => number;
  /** The node's cluster id and metadata configuration. */
  nodeConfig: NodeConfig;
  replicas?: number;
  deadGraceMs?: number;
  /** Where the reconfiguration says what it does. */
  log?: (line: string) => void;
  /**
   * The epoch this node writes a volume's objects under (its write lease); 0
   * refuses the write. Without leases (tests of the engine alone), 1.
   */
  epochOf?: (uid: string) => number;
  /** The clock of the proposer's backoff; the system's unless told (a simulation). */
  clock?: Clock;
  /** Randomness of the proposer's backoff and name; the system's unless told (a simulation). */
  random?: () => number;
}

/** Engine over the cluster; see the module doc. */
export class ClusterEngine implements Engine {
  readonly selfId: string;
  readonly local: NodeDisk;
  readonly replicaCount: number;
  readonly deadGraceMs: number;
  readonly acceptor: Acceptor;
  /** This node's acceptor states. */
  readonly acceptorStates: AcceptorIndex & { close(): void };
  readonly replica: ObjectReplica;
  readonly blocks: ReplicatedBlocks;
  readonly objects: ReplicatedObjects;
  readonly proposer: Proposer;
  readonly nodeConfig: NodeConfig;
  /** Changes of metadata voters; `tick()` it every second or so. */
  readonly reconfigurer: Reconfigurer;
  #rpc: RpcCaller;
  #members: () => MemberState[];
  #now: () => number;
  #view: { at: number; placement: Placement; byId: Map<string, MemberState> } | null = null;
  #objectLinks = new Map<string, ObjectLink>();
  #acceptorLinks = new Map<string, AcceptorLink>();

  constructor(options: ClusterEngineOptions) {
    this.selfId = options.selfId;
    this.local = options.local;
    this.replicaCount = options.replicas ?? replicasDefault;
    this.deadGraceMs = options.deadGraceMs ?? deadGraceMsDefault;
    this.#rpc = options.rpc;
    this.#members = options.members;
    this.#now = options.now;
    this.nodeConfig = options.nodeConfig;
    this.acceptorStates = options.acceptorStates;
    this.acceptor = new Acceptor(this.acceptorStates, this.nodeConfig);
    this.replica = new ObjectReplica(this.selfId, this.local, {
      journal: options.journal,
      checkpointBytes: options.journalCheckpointBytes,
    });
    this.blocks = new ReplicatedBlocks({
      selfId: this.selfId,
      engine: this.local,
      rpc: this.#rpc,
      replicasOf: (name) => this.replicaPeers(name),
      allPeers: () =>
        this.liveMembers().map((member) => ({ id: member.id, address: member.address })),
      isDead: (id) => this.countsDead(id),
    });
    this.objects = new ReplicatedObjects({
      selfId: this.selfId,
      replicasOf: (name) => this.replicaPeers(name).map((peer) => this.#objectLink(peer)),
      epochOf: options.epochOf ?? (() => 1),
      isDead: (id) => this.countsDead(id),
      floors: proposedFloors(() => this.proposer),
      everyone: () => this.liveMembers().map((member) => this.#objectLink(member)),
    });
    const nodeConfig = this.nodeConfig;
    const random = options.random ?? systemRandom;
    const clock = options.clock ?? systemClock;
    this.proposer = new Proposer({
      // A name of its own per process: a restarted node never reuses its ballots' tiebreak.
      node: `${this.selfId}.${Math.floor(random() * 2 ** 32).toString(16).padStart(8, "0")}`,
      random,
      clock,
      configs: {
        current: () => nodeConfig.current(),
        install: (config) => nodeConfig.install(config),
        refresh: () => this.reconfigurer.refresh(),
      },
      link: (id) => this.#voterLink(id),
    });
    const rpc = this.#rpc;
    this.reconfigurer = new Reconfigurer({
      selfId: this.selfId,
      configs: nodeConfig,
      proposer: this.proposer,
      members: () =>
        this.#members().map((member) => ({
          id: member.id,
          zone: member.zone,
          address: member.id === this.selfId ? "" : member.address,
          status: member.status,
          withinGrace: member.status === "dead" && this.#now() - member.since < this.deadGraceMs,
        })),
      localKeys: () => this.acceptorStates.keys(""),
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

  /** The methods other members call on this node. */
  methods(): Record<string, RpcMethod> {
    return {
      ...blockMethods(this.local),
      ...objectMethods(this.replica),
      ...acceptorMethods(this.acceptor, this.acceptorStates, this.nodeConfig),
    };
  }

  /** Drops the cached placement (the membership changed). */
  invalidate(): void {
    this.#view = null;
  }

  /** Members that hold a place: alive, suspect, or dead for less than the grace period. */
  placementMembers(): MemberState[] {
    const now = this.#now();
    return this.#members().filter((member) =>
      member.status === "alive" || member.status === "suspect" ||
      (member.status === "dead" && now - member.since < this.deadGraceMs)
    );
  }

  /** Members known alive now (listing asks them). */
  liveMembers(): MemberState[] {
    return this.#members().filter((member) =>
      member.status === "alive" || member.status === "suspect"
    );
  }

  /** The replicas of `name`, most preferred first. */
  replicaPeers(name: string): BlockPeer[] {
    const view = this.#currentView();
    return view.placement.replicas(name, this.replicaCount).map((id) => {
      const member = view.byId.get(id)!;
      return { id, address: member.address };
    });
  }

  /**
   * True when a write may go on without replica `id` (see `_write_quorum.ts`):
   * gossip says it is dead, and this node sees a majority of the members live.
   * A node cut off from the others sees them all dead; without the second rule
   * a lease holder on the wrong side of a partition would acknowledge writes on
   * its own copy that the holder taking over never sees.
   */
  countsDead(id: string): boolean {
    return this.member(id)?.status === "dead" && this.seesMajority();
  }

  /**
   * True when this node sees a majority of the members live. A node that does
   * not may be cut off, and its leases taken over by the others: it serves no
   * reads or writes of the volumes it holds until it sees a majority again.
   */
  seesMajority(): boolean {
    const members = this.#members().filter((member) => member.status !== "left");
    return 2 * this.liveMembers().length > members.length;
  }

  /** The member `id` as gossip knows it now (undefined when unknown). */
  member(id: string): MemberState | undefined {
    return this.#members().find((member) => member.id === id);
  }

  /** True when `id` is alive or suspect now. */
  isLive(id: string): boolean {
    const status = this.#currentView().byId.get(id)?.status;
    return status === "alive" || status === "suspect";
  }

  async hasBlock(hash: string): Promise<boolean> {
    if (await this.local.hasBlock(hash)) return true;
    const answers = await Promise.allSettled(
      this.replicaPeers(hash).filter((peer) => peer.id !== this.selfId).map(async (peer) => {
        const reply = await this.#rpc.call(peer.address, "block.has", {
          header: { hashes: [hash] },
        });
        return (reply.header.have as boolean[])[0] === true;
      }),
    );
    return answers.some((answer) => answer.status === "fulfilled" && answer.value);
  }

  putBlock(hash: string, data: Uint8Array): Promise<boolean> {
    return this.blocks.put(hash, data);
  }

  readBlock(hash: string, range: ByteRange, into: Uint8Array): Promise<void> {
    return this.blocks.read(hash, range, into);
  }

  async deleteBlock(hash: string): Promise<void> {
    await this.local.deleteBlock(hash);
    await this.#everyLiveMember("block.delete", { hashes: [hash] });
  }

  async *listBlocks(): AsyncIterable<string> {
    yield* await this.#union("block.list", "hashes", async () => {
      const hashes: string[] = [];
      for await (const hash of this.local.listBlocks()) hashes.push(hash);
      return hashes;
    });
  }

  readObject(
    name: string,
    range: ByteRange,
    into: Uint8Array,
    options: { existing?: boolean; view?: string } = {},
  ): Promise<void> {
    return this.objects.read(name, range.offset, into, options.existing ?? false, options.view);
  }

  writeObject(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; existing?: boolean } = {},
  ): Promise<void> {
    return this.objects.write(name, offset, data, {
      truncate: options.truncate ?? false,
      existing: options.existing ?? false,
    });
  }

  deleteObject(name: string): Promise<void> {
    return this.objects.delete(name);
  }

  async *listObjects(): AsyncIterable<string> {
    yield* await this.#union("object.list", "names", async () => {
      const names: string[] = [];
      for await (const name of this.local.listObjects()) names.push(name);
      return names;
    });
  }

  async getMeta(key: string): Promise<MetaEntry | null> {
    const register = await this.proposer.read(key);
    return register.value === null ? null : { version: register.version, value: register.value };
  }

  async putMeta(key: string, value: Uint8Array, expectedVersion: number): Promise<number> {
    const register = await this.proposer.change(key, (current) => {
      if (current.version !== expectedVersion) {
        throw new VersionMismatchError(
          `Cannot change ${key}: it is at version ${current.version}, not ${expectedVersion}`,
        );
      }
      return { version: current.version + 1, value };
    });
    return register.version;
  }

  async deleteMeta(key: string, expectedVersion: number): Promise<void> {
    await this.proposer.change(key, (current) => {
      if (current.value === null || current.version !== expectedVersion) {
        throw new VersionMismatchError(
          `Cannot delete ${key}: it is at version ${current.version}, not ${expectedVersion}`,
        );
      }
      return { version: 0, value: null };
    });
  }

  async listMeta(prefix: string): Promise<string[]> {
    // Every key a quorum of the voters holds, or an error: never a partial list.
    const candidates = await listChosenKeys({
      configs: this.nodeConfig,
      prefix,
      ask: async (id) => {
        if (id === this.selfId) {
          return {
            keys: await acceptedKeys(this.acceptorStates, prefix),
            config: this.nodeConfig.current(),
          };
        }
        const member = this.member(id);
        if (member === undefined || (member.status !== "alive" && member.status !== "suspect")) {
          throw new Error(`voter ${id} is not live`);
        }
        const reply = await this.#rpc.call(member.address, "px.list", { header: { prefix } });
        if (!Array.isArray(reply.header.keys)) throw new TypeError("px.list: malformed reply");
        const known = reply.header.config;
        return {
          keys: reply.header.keys.map(String),
          config: known === undefined || known === null ? null : parseConfig(known),
        };
      },
    });
    // An acceptor that missed a delete still lists the key: read each through a quorum.
    const keys: string[] = [];
    for (let i = 0; i < candidates.length; i += listReadsInFlightMax) {
      const batch = candidates.slice(i, i + listReadsInFlightMax);
      const present = await Promise.all(batch.map(async (key) => await this.getMeta(key) !== null));
      keys.push(...batch.filter((_, j) => present[j]));
    }
    return keys;
  }

  async flush(volume?: string): Promise<void> {
    await this.objects.flush(volume);
  }

  async close(): Promise<void> {
    await this.objects.settle();
    await this.replica.close();
    this.acceptorStates.close();
    await this.local.close();
  }

  #currentView() {
    // Dead members age out of placement without a membership event: re-check each second.
    if (this.#view === null || this.#now() - this.#view.at > 1000) {
      const members = this.placementMembers();
      this.#view = {
        at: this.#now(),
        placement: new Placement(
          members.map(({ id, weight, zone }) => ({ id, weight: Math.max(weight, 2 ** -32), zone })),
        ),
        byId: new Map(this.#members().map((member) => [member.id, member])),
      };
    }
    return this.#view;
  }

  #objectLink(peer: BlockPeer): ObjectLink {
    if (peer.id === this.selfId) return this.replica;
    let link = this.#objectLinks.get(`${peer.id} ${peer.address}`);
    if (link === undefined) {
      link = rpcObjectLink(this.#rpc, peer.id, peer.address);
      this.#objectLinks.set(`${peer.id} ${peer.address}`, link);
    }
    return link;
  }

  /** The acceptor of voter `id`; null when gossip does not know it or knows it dead. */
  #voterLink(id: string): AcceptorLink | null {
    if (id === this.selfId) return this.acceptor;
    const member = this.member(id);
    if (member === undefined || member.status === "dead" || member.status === "left") return null;
    return this.#acceptorLink({ id, address: member.address });
  }

  #acceptorLink(peer: BlockPeer): AcceptorLink {
    if (peer.id === this.selfId) return this.acceptor;
    let link = this.#acceptorLinks.get(`${peer.id} ${peer.address}`);
    if (link === undefined) {
      link = rpcAcceptorLink(this.#rpc, peer.address);
      this.#acceptorLinks.set(`${peer.id} ${peer.address}`, link);
    }
    return link;
  }

  async #everyLiveMember(method: string, header: Record<string, unknown>): Promise<void> {
    await Promise.allSettled(
      this.liveMembers().filter((member) => member.id !== this.selfId).map((member) =>
        this.#rpc.call(member.address, method, { header })
      ),
    );
  }

  /**
   * The sorted union of a list every live member answers (this node's from
   * `local`). A member that does not answer is left out: a block or object
   * missing from the list is only kept longer by garbage collection.
   */
  async #union(
    method: string,
    field: string,
    local: () => Promise<string[]>,
  ): Promise<string[]> {
    const lists = await Promise.allSettled(
      this.liveMembers().map(async (member) => {
        if (member.id === this.selfId) return await local();
        const reply = await this.#rpc.call(member.address, method, { header: {} });
        const list = reply.header[field];
        if (!Array.isArray(list)) throw new TypeError(`${method}: malformed reply`);
        return list.map(String);
      }),
    );
    const union = new Set<string>();
    for (const list of lists) {
      if (list.status === "fulfilled") { for (const item of list.value) union.add(item); }
    }
    return [...union].sort();
  }
}
