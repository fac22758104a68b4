/**
 * The cluster side of `atoll serve --gossip`: the node's cluster id and
 * metadata configuration, the cluster engine, write leases (the volumes'
 * authority), garbage collection rules, and, once started, the gossip node,
 * healing and the reconfiguration of metadata voters. Built in one place, in
 * order, each part given what it needs at construction.
 */
import { join } from "node:path";
import type { LocalEngine, Store } from "../core/mod.ts";
import { ClusterEngine } from "../cluster/cluster_engine.ts";
import type { MemberState } from "../cluster/membership/mod.ts";
import {
  type AcceptorLog,
  describeConfig,
  fileConfigDisk,
  NodeConfig,
  openNodeAcceptorLog,
} from "../cluster/meta/mod.ts";
import { JournalDisk } from "../cluster/data/mod.ts";
import { LeaseManager } from "../cluster/leases/mod.ts";
import { clusterGcPolicy, gcMethods, Healer } from "../cluster/repair/mod.ts";
import {
  type ClusterKey,
  ClusterNode,
  faults,
  LinkClient,
  type RefusalError,
  Refusals,
  RpcClient,
} from "../cluster/transport/mod.ts";
import type { Readiness } from "../http/app.ts";
import type { ListenerLimits } from "../net/mod.ts";
import type { ServeOptions } from "./serve.ts";
import { logger } from "../log/mod.ts";
import { MemoryToucher } from "../wasm/mod.ts";
import { registerClusterSeries } from "./_cluster_series.ts";
import { gatherMemberStats, type MemberStats, memberStatsMethods } from "./_member_stats.ts";

/** What the cluster side needs: the command line's cluster options, and the node's parts. */
export type ClusterMemberOptions =
  & Pick<
    ServeOptions,
    | "data"
    | "join"
    | "zone"
    | "weight"
    | "replicas"
    | "deadGraceMs"
    | "healIntervalMs"
    | "gcMinAgeMs"
    | "gcSettleMs"
    | "readCacheBytes"
    | "faultFile"
  >
  & {
    id: string;
    local: LocalEngine;
    key: ClusterKey;
    gossip: { hostname: string; port: number };
    /** Connection caps of the cluster request port, sized from the open-files limit. */
    portLimits?: ListenerLimits;
    /** The store, built after this (it takes the leases' access and the GC rules). */
    store: () => Store;
  };

const clusterLog = logger("cluster");
const log = (line: string) => clusterLog.info(line.replaceAll("{", "{{").replaceAll("}", "}}"));

/** A node's membership of its cluster; see the module doc. */
export class ClusterMember {
  readonly nodeConfig: NodeConfig;
  readonly engine: ClusterEngine;
  readonly leases: LeaseManager;
  readonly gcPolicy: ReturnType<typeof clusterGcPolicy>;
  /** Refused messages and links, counted once for the node's server and its calls. */
  readonly #refusals = new Refusals();
  /** The one client of the node's calls to peers (engine, leases, GC, healing). */
  readonly #rpc: LinkClient;
  #options: ClusterMemberOptions;
  #node: ClusterNode | null = null;
  #healer: Healer | null = null;
  #acceptorLog: AcceptorLog;
  #journal: JournalDisk;
  /** Touches the read cache's new memory on a worker (cluster/data/_page_supply.ts). */
  #toucher = new MemoryToucher();
  /** Removes the cluster's series from /metrics (set once started). */
  #unregisterSeries: () => void = () => {};

  private constructor(options: ClusterMemberOptions, nodeConfig: NodeConfig) {
    this.#options = options;
    this.nodeConfig = nodeConfig;
    const { id, key, local } = options;
    const onRefusal = (peer: string, refusal: RefusalError) => this.#refusals.record(peer, refusal);
    this.#rpc = new LinkClient(key, nodeConfig.identity, {
      selfId: id,
      onRefusal,
      // Members of an earlier version (a rolling upgrade) answer sealed HTTP only.
      fallback: new RpcClient(key, nodeConfig.identity, { onRefusal }),
    });
    const self: MemberState = {
      id,
      address: "",
      zone: options.zone,
      weight: options.weight,
      incarnation: 0,
      status: "alive",
      since: 0,
    };
    this.#acceptorLog = openNodeAcceptorLog(local.dir);
    this.#journal = new JournalDisk(join(local.dir, "journal"));
    this.engine = new ClusterEngine({
      selfId: id,
      local,
      journal: this.#journal,
      acceptorStates: this.#acceptorLog,
      rpc: this.#rpc,
      members: () => this.#node?.members() ?? [self],
      now: () => performance.now(),
      replicas: options.replicas,
      deadGraceMs: options.deadGraceMs,
      nodeConfig,
      log,
      epochOf: (uid) => this.leases.epochOf(uid),
      trustsWriter: (uid) => this.leases.trustsWriter(uid),
      remotePagesBytes: options.readCacheBytes,
      touchMemory: (buffer) => this.#toucher.touch(buffer),
    });
    this.leases = new LeaseManager({
      store: options.store,
      engine: this.engine,
      rpc: this.#rpc,
    });
    this.gcPolicy = clusterGcPolicy({
      engine: this.engine,
      rpc: this.#rpc,
      minAgeMs: Math.round(options.gcMinAgeMs),
      settleMs: Math.round(options.gcSettleMs),
    });
  }

  /**
   * Reads the node's cluster state from its data directory. Without seeds there
   * is nothing to join: a node that belongs to no cluster creates one,
   * deliberately. With seeds it never does: it takes no writes until it joined.
   */
  static create(options: ClusterMemberOptions): ClusterMember {
    if (options.faultFile !== null) isolateWhileExists(options.faultFile);
    const saved = fileConfigDisk(join(options.data, "cluster.json"));
    const nodeConfig = new NodeConfig(saved.state, saved.disk);
    nodeConfig.onInstall((config) => log(`metadata configuration ${describeConfig(config)}`));
    return new ClusterMember(options, nodeConfig);
  }

  /** Creates the cluster when this node starts one; then gossip, healing, voters. */
  async start(): Promise<void> {
    const options = this.#options;
    if (options.join.length === 0 && await this.nodeConfig.bootstrap(options.id)) {
      log(`created cluster ${this.nodeConfig.identity.current()}`);
    }
    this.#node = await ClusterNode.start({
      key: options.key,
      identity: this.nodeConfig.identity,
      bind: options.gossip,
      join: options.join,
      self: { id: options.id, zone: options.zone, weight: options.weight },
      portLimits: options.portLimits,
      refusals: this.#refusals,
      rpc: this.#rpc,
      methods: {
        ...this.engine.methods(),
        ...this.leases.methods(),
        ...gcMethods(options.store(), this.engine),
        ...memberStatsMethods(),
      },
      pooledData: this.engine.pooledData,
      // A member gone may hold copies no one else has: kept until declared lost.
      keepGone: (id) => !this.engine.lostMembers().includes(id),
    });
    this.#node.membership.onChange((member) => {
      this.engine.invalidate();
      this.#healer?.nudge(); // placement moved: walk what this node stores
      clusterLog.info("member {member} at {address} is {status}", {
        member: member.id,
        address: member.address,
        status: member.status,
      });
    });
    this.#healer = new Healer({
      engine: this.engine,
      rpc: this.#node.rpc,
      intervalMs: options.healIntervalMs,
    });
    this.#healer.start();
    this.engine.reconfigurer.start();
    this.#unregisterSeries = registerClusterSeries({
      engine: this.engine,
      node: this.#node,
      healer: this.#healer,
      leases: this.leases,
      acceptorLog: this.#acceptorLog,
      journal: this.#journal,
    });
  }

  /** The cluster address (HOST:PORT) once started. */
  get address(): string | null {
    return this.#node?.address ?? null;
  }

  /**
   * Ready once the node knows its cluster's metadata configuration (it created
   * the cluster, or a member answered its join); until then it takes no writes
   * and opens no volume, so it can never act as a cluster of its own.
   */
  ready(): Readiness {
    if (this.nodeConfig.newest() !== null) return { ready: true };
    const refused =
      this.#node?.refusalStatus().peers.map((peer) => `${peer.address} refused: ${peer.reason}`) ??
        [];
    return {
      ready: false,
      reason: `not joined to a cluster yet (no member answered through ` +
        `${this.#options.join.join(", ")}${refused.length > 0 ? `; ${refused.join("; ")}` : ""})`,
    };
  }

  /** The members as `GET /v1/cluster` lists them. */
  members() {
    return (this.#node?.members() ?? []).map((member) => ({
      id: member.id,
      address: member.address,
      state: member.status,
      zone: member.zone,
      incarnation: member.incarnation,
      weight: member.weight,
    }));
  }

  /** The rest of `GET /v1/cluster`. */
  status(): Record<string, unknown> {
    const engine = this.engine;
    return {
      replicas: engine.replicaCount,
      deadGraceMs: engine.deadGraceMs,
      lost: engine.lostMembers(),
      healing: this.#healer?.status,
      blocks: engine.blocks.counters,
      objects: engine.objects.counters,
      leases: this.leases.counters,
      refused: this.#node?.refusalStatus(),
      metadata: {
        clusterId: this.nodeConfig.identity.current(),
        configuration: this.nodeConfig.newest(),
        // False while the configuration above is known in memory only (a full disk).
        configurationSaved: this.nodeConfig.newest() === this.nodeConfig.current(),
        reconfiguration: engine.reconfigurer.status,
      },
    };
  }

  /** Every live member's figures for the dashboard (`GET /v1/stats`), this node first. */
  memberStats(): Promise<MemberStats[]> {
    return gatherMemberStats(this.#options.id, this.engine.liveMembers(), this.#rpc);
  }

  /** Stops background work (healing, voter changes) before the node flushes. */
  async stopBackground(): Promise<void> {
    await this.#healer?.stop();
    await this.engine.reconfigurer.stop();
  }

  /** Leaves gracefully: the others learn it at once. */
  async leave(): Promise<void> {
    this.#unregisterSeries();
    await this.#node?.leave();
    this.#toucher.close();
  }
}

/** Cuts this node off from the cluster while `path` exists (checked every 100 ms at most). */
function isolateWhileExists(path: string): void {
  let checkedAt = -Infinity;
  let isolated = false;
  faults.isolated = () => {
    const now = performance.now();
    if (now - checkedAt > 100) {
      checkedAt = now;
      let exists = false;
      try {
        Deno.statSync(path);
        exists = true;
      } catch {
        exists = false;
      }
      if (exists !== isolated) {
        clusterLog.warn(`fault injection: ${exists ? "isolated from" : "back in"} the cluster`);
      }
      isolated = exists;
    }
    return isolated;
  };
}
