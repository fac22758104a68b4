/** `atoll serve`: one node with its data directory, HTTP API and (later) NBD and gossip. */
import { join } from "node:path";
import { LocalEngine, Store } from "../core/mod.ts";
import { createApp, type Readiness } from "../http/app.ts";
import { HashPool } from "../wasm/hash_pool.ts";
import { type HashEngineName } from "../wasm/hash_pool.ts";
import { parseHostPort } from "./address.ts";
import { NbdServer, parseNbdAddress } from "../nbd/server.ts";
import { ClusterKey } from "../cluster/transport/mod.ts";
import { ClusterNode } from "../cluster/transport/mod.ts";
import { refusalGauges } from "../cluster/transport/mod.ts";
import { ClusterEngine } from "../cluster/cluster_engine.ts";
import { describeConfig, fileConfigDisk, NodeConfig } from "../cluster/meta/mod.ts";
import { Healer } from "../cluster/repair/mod.ts";
import { LeaseManager } from "../cluster/leases/mod.ts";
import { clusterGcPolicy, gcMethods } from "../cluster/repair/mod.ts";
import { faults, RpcClient } from "../cluster/transport/mod.ts";
import type { MemberState } from "../cluster/membership/mod.ts";
import type { Engine } from "../core/mod.ts";

/** Options of {@linkcode serve}, as the command line gives them. */
export interface ServeOptions {
  data: string;
  http: string;
  nbd: string;
  tokenFile: string | null;
  zone: string | null;
  /** Cluster port (UDP gossip + TCP requests); null runs a single node. */
  gossip: string | null;
  join: string[];
  clusterKeyFile: string | null;
  /** Relative capacity for placement. */
  weight: number;
  /** Copies of each block, object and metadata key (cluster). */
  replicas: number;
  /** How long a dead member keeps its place before its data is re-replicated. */
  deadGraceMs: number;
  /** Pause between healing passes. */
  healIntervalMs: number;
  /** In a cluster, blocks younger than this are never collected. */
  gcMinAgeMs: number;
  /** In a cluster, the pause between garbage collection's two marks. */
  gcSettleMs: number;
  /** Testing: while this file exists, the node drops all cluster traffic (a partition). */
  faultFile: string | null;
  hashEngine: HashEngineName;
  version: string;
}

/** A running node; `shutdown()` stops it cleanly. */
export interface Node {
  id: string;
  httpAddress: { hostname: string; port: number };
  shutdown(): Promise<void>;
  finished: Promise<void>;
}

/** Starts a node and returns once it listens. */
export async function serve(options: ServeOptions): Promise<Node> {
  const http = parseHostPort(options.http, "--http");
  const nbdAddress = parseNbdAddress(options.nbd);
  const gossip = options.gossip === null ? null : parseHostPort(options.gossip, "--gossip");
  if (gossip === null && options.join.length > 0) {
    throw new TypeError("Cannot join a cluster: --join needs --gossip HOST:PORT to listen on");
  }
  if (gossip !== null && options.clusterKeyFile === null) {
    throw new TypeError(
      "Cannot start cluster: --cluster-key-file is required with --gossip (nodes never talk unauthenticated)",
    );
  }
  const key = options.clusterKeyFile === null
    ? null
    : await ClusterKey.fromFile(options.clusterKeyFile);
  const token = options.tokenFile === null ? null : await readToken(options.tokenFile);
  if (options.faultFile !== null) isolateWhileExists(options.faultFile);
  const local = await LocalEngine.open({ dir: options.data });
  const id = await nodeId(options.data);
  let cluster: ClusterNode | null = null;
  let clusterEngine: ClusterEngine | null = null;
  let engine: Engine = local;
  let nodeConfig: NodeConfig | null = null;
  if (key !== null) {
    const saved = fileConfigDisk(join(options.data, "cluster.json"));
    nodeConfig = new NodeConfig(saved.state, saved.disk);
    const identity = nodeConfig.identity;
    nodeConfig.onInstall((config) =>
      console.error(`atoll: cluster: metadata configuration ${describeConfig(config)}`)
    );
    // Without seeds there is nothing to join: this node creates a new cluster, deliberately.
    // With seeds it never does: it takes no writes until it has joined (no cluster of its own).
    if (options.join.length === 0 && await nodeConfig.bootstrap(id)) {
      console.error(`atoll: cluster: created cluster ${nodeConfig.identity.current()}`);
    }
    const self: MemberState = {
      id,
      address: "",
      zone: options.zone,
      weight: options.weight,
      incarnation: 0,
      status: "alive",
      since: 0,
    };
    engine = clusterEngine = new ClusterEngine({
      selfId: id,
      local,
      rpc: new RpcClient(key, identity),
      members: () => cluster?.members() ?? [self],
      now: () => performance.now(),
      replicas: options.replicas,
      deadGraceMs: options.deadGraceMs,
      nodeConfig,
      log: (line) => console.error(`atoll: cluster: ${line}`),
    });
  }
  const identity = nodeConfig?.identity ?? null;
  const store = new Store({ engine, pool: new HashPool({ engine: options.hashEngine }) });
  const leases = clusterEngine === null || key === null
    ? null
    : new LeaseManager({ store, engine: clusterEngine, rpc: new RpcClient(key, identity!) });
  if (leases !== null) clusterEngine!.epochOf = (uid) => leases.epochOf(uid);
  if (clusterEngine !== null && key !== null) {
    store.gcPolicy = clusterGcPolicy({
      engine: clusterEngine,
      rpc: new RpcClient(key, identity!),
      minAgeMs: Math.round(options.gcMinAgeMs),
      settleMs: Math.round(options.gcSettleMs),
    });
  }
  let healer: Healer | null = null;
  let httpAddress = http;
  // A cluster member is ready once it knows its cluster's metadata configuration
  // (it bootstrapped the cluster, or a member answered its join); until then it
  // takes no writes and opens no volume, so it can never act as a cluster of its own.
  const ready = (): Readiness => {
    if (nodeConfig === null || nodeConfig.current() !== null) return { ready: true };
    const refused =
      cluster?.refusalStatus().peers.map((peer) => `${peer.address} refused: ${peer.reason}`) ?? [];
    return {
      ready: false,
      reason: `not joined to a cluster yet (no member answered through ${options.join.join(", ")}` +
        `${refused.length > 0 ? `; ${refused.join("; ")}` : ""})`,
    };
  };
  const app = createApp({
    store,
    ready,
    token,
    version: options.version,
    members: () =>
      cluster === null
        ? [{
          id,
          address: `${httpAddress.hostname}:${httpAddress.port}`,
          state: "alive",
          zone: options.zone,
        }]
        : cluster.members().map((member) => ({
          id: member.id,
          address: member.address,
          state: member.status,
          zone: member.zone,
          incarnation: member.incarnation,
          weight: member.weight,
        })),
    clusterStatus: () =>
      clusterEngine === null || healer === null ? {} : {
        replicas: clusterEngine.replicaCount,
        deadGraceMs: clusterEngine.deadGraceMs,
        healing: healer.status,
        blocks: clusterEngine.blocks.counters,
        objects: clusterEngine.objects.counters,
        leases: leases?.counters,
        refused: cluster?.refusalStatus(),
        metadata: {
          clusterId: clusterEngine.nodeConfig.identity.current(),
          configuration: clusterEngine.nodeConfig.current(),
          reconfiguration: clusterEngine.reconfigurer.status,
        },
      },
    gauges: () =>
      healer === null || clusterEngine === null || leases === null ? {} : {
        ...clusterGauges(clusterEngine, healer, leases),
        ...(cluster === null ? {} : refusalGauges(cluster.refusals.byReason)),
      },
    leases: leases ?? undefined,
    replicasOf: clusterEngine === null
      ? undefined
      : (name) => clusterEngine!.replicaPeers(name).map((peer) => peer.id),
  });
  const listening = Promise.withResolvers<{ hostname: string; port: number }>();
  const server = Deno.serve({
    hostname: http.hostname,
    port: http.port,
    onListen: (address) => listening.resolve(address),
  }, app.fetch);
  httpAddress = await listening.promise;
  const nbd = await NbdServer.listen(store, nbdAddress, {
    openVolume: leases === null ? undefined : (name) => leases.openDevice(name),
    ready,
  });
  if (gossip !== null && key !== null && clusterEngine !== null) {
    cluster = await ClusterNode.start({
      key,
      identity: identity!,
      bind: gossip,
      join: options.join,
      self: { id, zone: options.zone, weight: options.weight },
      methods: {
        ...clusterEngine.methods(),
        ...leases!.methods(),
        ...gcMethods(store, clusterEngine),
      },
    });
    const placementOf = clusterEngine;
    cluster.membership.onChange(() => placementOf.invalidate());
    healer = new Healer({
      engine: clusterEngine,
      rpc: cluster.rpc,
      intervalMs: options.healIntervalMs,
    });
    healer.start();
    clusterEngine.reconfigurer.start();
  }
  const nbdUrl = "path" in nbd.address
    ? `unix:${nbd.address.path}`
    : `nbd://${nbd.address.hostname}:${nbd.address.port}`;
  console.error(
    `atoll ${options.version}: node ${id} serving http://${httpAddress.hostname}:${httpAddress.port}` +
      ` nbd ${nbdUrl}${cluster === null ? "" : ` gossip ${cluster.address}`}` +
      ` data ${options.data}${token === null ? "" : " (token required)"}`,
  );
  let stopping: Promise<void> | null = null;
  const shutdown = () =>
    stopping ??= (async () => {
      // Stop taking I/O and make what was acknowledged durable while the cluster
      // still counts this node in: once it has left, another node may take its leases.
      await healer?.stop();
      await clusterEngine?.reconfigurer.stop();
      await nbd.close();
      await store.flushVolumes();
      await cluster?.leave();
      await server.shutdown();
      await store.close();
    })();
  return { id, httpAddress, shutdown, finished: server.finished };
}

async function readToken(path: string): Promise<string> {
  const token = (await Deno.readTextFile(path)).trim();
  if (token.length < 16) {
    throw new TypeError(
      `Cannot use token file ${path}: the token must have at least 16 characters`,
    );
  }
  return token;
}

/** The node's stable id, made on first start and kept in the data directory. */
async function nodeId(dir: string): Promise<string> {
  const path = join(dir, "node-id");
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const id = crypto.randomUUID();
  await Deno.writeTextFile(`${path}.tmp`, id + "\n");
  await Deno.rename(`${path}.tmp`, path);
  return id;
}

/** The cluster's series in /metrics. */
function clusterGauges(engine: ClusterEngine, healer: Healer, leases: LeaseManager) {
  const { status } = healer;
  const series = (help: string, value: number) => ({ help, value });
  return {
    atoll_cluster_members_placed: series(
      "Members holding a place (alive, suspect, or dead within the grace period)",
      engine.placementMembers().length,
    ),
    atoll_cluster_members_live: series("Members alive or suspect", engine.liveMembers().length),
    atoll_heal_passes_total: series("Healing passes completed", status.passes),
    atoll_heal_under_replicated: series(
      "Items this node found short of copies in its last healing pass",
      status.underReplicated,
    ),
    atoll_heal_blocks_copied_total: series(
      "Blocks copied to a replica by healing",
      status.blocksCopied,
    ),
    atoll_heal_blocks_handed_off_total: series(
      "Local block copies removed once every replica held them",
      status.blocksHandedOff,
    ),
    atoll_heal_objects_copied_total: series(
      "Objects copied to a replica by healing",
      status.objectsCopied,
    ),
    atoll_heal_hints_replayed_total: series(
      "Missed block puts replayed (hinted handoff)",
      status.hintsReplayed,
    ),
    atoll_heal_corrupt_blocks_repaired_total: series(
      "Corrupt local blocks found by scrub and replaced",
      status.corruptBlocksRepaired,
    ),
    atoll_heal_errors_total: series(
      "Healing copies that failed (retried next pass)",
      status.errors,
    ),
    atoll_cluster_block_fetches_total: series(
      "Blocks fetched from a replica",
      engine.blocks.counters.fetched,
    ),
    atoll_lease_acquired_total: series("Write leases taken by this node", leases.counters.acquired),
    atoll_lease_released_total: series(
      "Write leases this node gave up to another",
      leases.counters.released,
    ),
    atoll_lease_takeovers_total: series(
      "Leases taken from a holder that was dead or gone",
      leases.counters.takeovers,
    ),
    atoll_lease_fenced_writes_total: series(
      "Writes refused on connections open when this node lost a lease",
      leases.counters.fencedWrites,
    ),
    atoll_lease_last_move_ms: series(
      "Duration of the last lease move to this node",
      leases.counters.lastMoveMs,
    ),
    atoll_cluster_object_repairs_total: series(
      "Object replicas brought up to date by their writer",
      engine.objects.counters.repairs,
    ),
  };
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
        console.error(
          `atoll: fault injection: ${exists ? "isolated from" : "back in"} the cluster`,
        );
      }
      isolated = exists;
    }
    return isolated;
  };
}
