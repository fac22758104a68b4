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
import type {
  BlockBatch,
  ByteRange,
  Engine,
  MetaEntry,
  NodeDisk,
  ReadObjectOptions,
} from "../core/mod.ts";
import { systemClock, systemRandom } from "../core/mod.ts";
import {
  Acceptor,
  type AcceptorIndex,
  acceptorMethods,
  type NodeConfig,
  type Proposer,
  type Reconfigurer,
} from "./meta/mod.ts";
import type { ClusterEngineOptions } from "./_cluster_engine_options.ts";
import { blockMethods, blockMethodsPooled, type BlockPeer, ReplicatedBlocks } from "./data/mod.ts";
import { objectMethods, objectMethodsPooled, ObjectReplica } from "./data/mod.ts";
import { ReplicatedObjects } from "./data/mod.ts";
import { MemberView } from "./_member_view.ts";
import { EngineMeta } from "./_engine_meta.ts";
import { MemberCalls } from "./_member_calls.ts";
import { proposedFloors } from "./object_floors.ts";
import { goneReplicaCount, LostMembers } from "./lost_members.ts";
import type { MemberState } from "./membership/mod.ts";
import type { RpcCaller, RpcMethod } from "./transport/mod.ts";

export type { ClusterEngineOptions };

/** Replicas of each block, object and metadata key unless told (`--replicas`). */
export const replicasDefault = 3;
/** How long a dead member keeps its place before its data is re-replicated. */
export const deadGraceMsDefault = 60_000;

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
  #view: MemberView;
  #meta: EngineMeta;
  #calls: MemberCalls;
  #lost: LostMembers;

  constructor(options: ClusterEngineOptions) {
    this.selfId = options.selfId;
    this.local = options.local;
    this.replicaCount = options.replicas ?? replicasDefault;
    this.deadGraceMs = options.deadGraceMs ?? deadGraceMsDefault;
    this.#rpc = options.rpc;
    this.#lost = new LostMembers({
      proposer: () => this.proposer,
      members: options.members,
      now: options.now,
    });
    this.#view = new MemberView({
      members: options.members,
      now: options.now,
      deadGraceMs: this.deadGraceMs,
      replicaCount: this.replicaCount,
    });
    this.nodeConfig = options.nodeConfig;
    this.acceptorStates = options.acceptorStates;
    this.acceptor = new Acceptor(this.acceptorStates, this.nodeConfig);
    this.replica = new ObjectReplica(this.selfId, this.local, {
      journal: options.journal,
      checkpointBytes: options.journalCheckpointBytes,
      inPlaceBytes: options.journalInPlaceBytes,
      placementOf: (name) => this.#view.placementDigestOf(name),
    });
    this.#calls = new MemberCalls({
      selfId: this.selfId,
      rpc: this.#rpc,
      replica: this.replica,
      local: this.local,
      liveMembers: () => this.liveMembers(),
      replicaPeers: (name) => this.replicaPeers(name),
    });
    this.blocks = new ReplicatedBlocks({
      selfId: this.selfId,
      engine: this.local,
      rpc: this.#rpc,
      replicasOf: (name) => this.replicaPeers(name),
      allPeers: () =>
        this.liveMembers().map((member) => ({ id: member.id, address: member.address })),
      isDead: (id) => this.countsDead(id),
      clock: options.clock,
      // However long ago: a member away for good holds its copies until declared lost.
      awayMembers: () => this.goneMembers().map((member) => member.id),
    });
    this.objects = new ReplicatedObjects({
      selfId: this.selfId,
      replicasOf: (name) => this.replicaPeers(name).map((peer) => this.#calls.objectLink(peer)),
      ownReplica: (name) => this.#view.places(name, this.selfId) ? this.replica : null,
      epochOf: options.epochOf ?? (() => 1),
      trustsWriter: options.trustsWriter,
      remotePagesBytes: options.remotePagesBytes,
      touchMemory: options.touchMemory,
      earlyFlushes: true,
      isDead: (id) => this.countsDead(id),
      floors: proposedFloors(() => this.proposer),
      everyone: () => this.liveMembers().map((member) => this.#calls.objectLink(member)),
      seenGone: () =>
        this.#view.recentlyGone().filter((member) => !this.#lost.known().has(member.id))
          .map((member) => this.#calls.objectLink(member)),
      goneWithinGrace: () =>
        this.#view.recentlyGone(1).filter((member) => !this.#lost.known().has(member.id))
          .map((member) => member.id),
      longGone: () =>
        this.#view.longGone().filter((member) => !this.#lost.known().has(member.id))
          .map((member) => member.id),
      goneReplicas: (name) => goneReplicaCount(this.#view, this.#lost, name, this.replicaCount),
      allLost: (ids) => this.#lost.allLost(ids),
    });
    this.#meta = new EngineMeta({
      selfId: this.selfId,
      rpc: this.#rpc,
      nodeConfig: this.nodeConfig,
      acceptor: this.acceptor,
      acceptorStates: this.acceptorStates,
      members: options.members,
      member: (id) => this.member(id),
      now: options.now,
      deadGraceMs: this.deadGraceMs,
      random: options.random ?? systemRandom,
      clock: options.clock ?? systemClock,
      log: options.log,
    });
    this.proposer = this.#meta.proposer;
    this.reconfigurer = this.#meta.reconfigurer;
  }

  /** Of methods(), those whose call data the link server may read into reused buffers. */
  readonly pooledData: ReadonlySet<string> = new Set([
    ...objectMethodsPooled,
    ...blockMethodsPooled,
  ]);

  /** The methods other members call on this node. */
  methods(): Record<string, RpcMethod> {
    return {
      ...blockMethods(this.local),
      ...this.blocks.methods(),
      ...objectMethods(this.replica),
      ...acceptorMethods(this.acceptor, this.acceptorStates, this.nodeConfig),
    };
  }

  /** Drops the cached placement (the membership changed). */
  invalidate(): void {
    this.#view.invalidate();
  }

  /** Members that hold a place: alive, suspect, or dead for less than the grace period. */
  placementMembers(): MemberState[] {
    return this.#view.placementMembers();
  }

  /** Declares member `id` lost for good (lost_members.ts): its copies are given up. */
  async declareLost(id: string): Promise<void> {
    await this.#lost.declare(id);
  }

  /** The members this node knows were declared lost. */
  lostMembers(): string[] {
    return [...this.#lost.known()];
  }

  /**
   * Members gossip calls dead or gone, however long ago (while it remembers
   * them), but those an operator declared lost: they may still run, unseen.
   */
  goneMembers(): MemberState[] {
    return this.#view.recentlyGone(Infinity).filter((member) => !this.#lost.known().has(member.id));
  }

  /** Members known alive now (listing asks them). */
  liveMembers(): MemberState[] {
    return this.#view.liveMembers();
  }

  /** The replicas of `name`, most preferred first. */
  replicaPeers(name: string): BlockPeer[] {
    return this.#view.replicaPeers(name);
  }

  /**
   * True when a write may go on without replica `id`: gossip says it is dead and
   * this node sees a majority live (`_write_quorum.ts`, `_member_view.ts`).
   */
  countsDead(id: string): boolean {
    return this.#view.countsDead(id);
  }

  /** True when this node sees a majority of the members live (else it may be cut off). */
  seesMajority(): boolean {
    return this.#view.seesMajority();
  }

  /** The member `id` as gossip knows it now (undefined when unknown). */
  member(id: string): MemberState | undefined {
    return this.#view.member(id);
  }

  /** True when `id` is alive or suspect now. */
  isLive(id: string): boolean {
    return this.#view.isLive(id);
  }

  hasBlock(hash: string): Promise<boolean> {
    return this.#calls.hasBlock(hash);
  }

  putBlock(hash: string, data: Uint8Array): Promise<boolean> {
    return this.blocks.put(hash, data);
  }

  /** Blocks synced on their replicas together (an upload's: data/_block_batch.ts). */
  blockBatch(): BlockBatch {
    return this.blocks.batch();
  }

  readBlock(hash: string, range: ByteRange, into: Uint8Array): Promise<void> {
    return this.blocks.read(hash, range, into);
  }

  deleteBlock(hash: string): Promise<void> {
    return this.#calls.deleteBlock(hash);
  }

  async *listBlocks(): AsyncIterable<string> {
    yield* await this.#calls.listBlocks();
  }

  readObject(
    name: string,
    range: ByteRange,
    into: Uint8Array,
    options: ReadObjectOptions = {},
  ): Promise<void> {
    return this.objects.read(name, range.offset, into, options);
  }

  writeObject(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; existing?: boolean; epoch?: number } = {},
  ): Promise<void> {
    return this.objects.write(name, offset, data, {
      truncate: options.truncate ?? false,
      existing: options.existing ?? false,
      epoch: options.epoch,
    });
  }

  deleteObject(name: string, options: { epoch?: number } = {}): Promise<void> {
    return this.objects.delete(name, options);
  }

  async *listObjects(): AsyncIterable<string> {
    yield* await this.#calls.listObjects();
  }

  getMeta(key: string): Promise<MetaEntry | null> {
    return this.#meta.get(key);
  }

  putMeta(key: string, value: Uint8Array, expectedVersion: number): Promise<number> {
    return this.#meta.put(key, value, expectedVersion);
  }

  deleteMeta(key: string, expectedVersion: number): Promise<void> {
    return this.#meta.delete(key, expectedVersion);
  }

  listMeta(prefix: string, options: { settled?: boolean } = {}): Promise<string[]> {
    return this.#meta.list(prefix, options.settled ?? false);
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
}
