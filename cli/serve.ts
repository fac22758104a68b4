/** `atoll serve`: one node with its data directory, HTTP API and (later) NBD and gossip. */
import { join } from "node:path";
import { LocalAuthority, LocalEngine, PatientAuthority, Store, systemClock } from "../core/mod.ts";
import { createApp } from "../http/app.ts";
import { HashPool } from "../wasm/hash_pool.ts";
import { type HashEngineName } from "../wasm/hash_pool.ts";
import { parseHostPort } from "../core/address.ts";
import { NbdServer, parseNbdAddress } from "../nbd/server.ts";
import { ClusterKey } from "../cluster/transport/mod.ts";
import {
  type FilesLimit,
  HttpServer,
  listenerBudget,
  raiseFilesLimit,
  surviveFilesExhaustion,
} from "../net/mod.ts";
import { ClusterMember } from "./cluster_member.ts";
import { openRados, type RadosServeOptions } from "./_rados_node.ts";
import { logger } from "../log/mod.ts";
import { startProcessMetrics } from "../metrics/mod.ts";
import { registerNodeSeries } from "./_node_series.ts";

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
  /**
   * In a cluster, bytes of pages the lease holder keeps of objects it writes
   * that other members store (`--read-cache-mib`; 0: none).
   */
  readCacheBytes: number;
  /** Testing: while this file exists, the node drops all cluster traffic (a partition). */
  faultFile: string | null;
  hashEngine: HashEngineName;
  /** `--engine rados`: the node keeps everything in a Ceph pool (null: local files). */
  rados: Omit<RadosServeOptions, "gcMinAgeMs" | "gcSettleMs"> | null;
  /** Time an HTTP client has to send a whole request head (`--header-timeout`). */
  headerTimeoutMs: number;
  /** Counts and times each volume's NBD requests (`--volume-metrics on|off`; default on). */
  volumeMetrics?: boolean;
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
  if (gossip !== null && options.rados !== null) {
    throw new TypeError(
      "Cannot use --engine rados with --gossip: nodes on one Ceph pool share it, not a ring",
    );
  }
  const key = options.clusterKeyFile === null
    ? null
    : ClusterKey.fromText(await Deno.readTextFile(options.clusterKeyFile));
  const token = options.tokenFile === null ? null : await readToken(options.tokenFile);
  // Every connection and open block file costs a descriptor: raise the limit,
  // then cap each listener by what it allows, so that no flood exhausts it.
  const files = await raiseFilesLimit();
  const budget = listenerBudget(files.soft);
  surviveFilesExhaustion((error) =>
    logger("node").error("out of file descriptors in a background task: {error}; serving on", {
      error: error.message,
    })
  );
  await Deno.mkdir(options.data, { recursive: true });
  const id = await nodeId(options.data);
  const rados = options.rados === null ? null : await openRados(
    { ...options.rados, gcMinAgeMs: options.gcMinAgeMs, gcSettleMs: options.gcSettleMs },
    id,
    () => store,
  );
  const local = rados !== null
    ? null
    : await LocalEngine.open({ dir: options.data, openFilesMax: budget.engineFilesMax });
  const member: ClusterMember | null = gossip === null || key === null || local === null
    ? null
    : ClusterMember.create({
      ...options,
      id,
      local,
      key,
      gossip,
      portLimits: budget.cluster,
      store: (): Store => store,
    });
  const store: Store = new Store({
    engine: member?.engine ?? rados?.engine ?? local!,
    pool: new HashPool({ engine: options.hashEngine }),
    access: member?.leases.access ?? rados?.leases.access,
    gcPolicy: member?.gcPolicy ?? rados?.gcPolicy,
    // The local engine empties DATA/tmp/ when it opens: a crash leaves no spooled upload behind.
    spoolDir: join(options.data, "tmp"),
  });
  // Maps written whole (before maps had pages) become roots and pages, once: on a single
  // node every record before it serves; in a cluster images and snapshots, once joined.
  // (On RADOS the pool is new to maps with pages, and other nodes may have volumes open.)
  const migrated = member === null && rados === null
    ? await store.migrateMaps({ volumes: true })
    : 0;
  if (migrated > 0) logger("node").info("rewrote {count} maps as pages", { count: migrated });
  // In a cluster, requests wait out members that cannot answer for a while (a death not
  // yet known) instead of failing: core/patient_authority.ts.
  const authority = member !== null
    ? new PatientAuthority(member.leases, {
      clock: systemClock,
      waits: () => member.engine.seesMajority(),
    })
    : rados?.leases ?? new LocalAuthority(store);
  const ready = () => member?.ready() ?? { ready: true };
  let httpAddress = http;
  const app = createApp({
    store,
    authority,
    ready,
    token,
    version: options.version,
    members: () =>
      member?.members() ?? [{
        id,
        address: `${httpAddress.hostname}:${httpAddress.port}`,
        state: "alive",
        zone: options.zone,
      }],
    clusterStatus: () => member?.status() ?? {},
    memberStats: member === null ? undefined : () => member.memberStats(),
    leases: member?.leases ?? rados?.leases,
    replicasOf: member === null
      ? undefined
      : (name) => member.engine.replicaPeers(name).map((peer) => peer.id),
    declareLost: member === null ? undefined : (id) => member.engine.declareLost(id),
  });
  const server = HttpServer.listen({
    hostname: http.hostname,
    port: http.port,
    name: "http",
    handler: app.fetch,
    limits: budget.http,
    timeouts: { headerTimeoutMs: options.headerTimeoutMs },
  });
  httpAddress = server.address;
  const nbd = await NbdServer.listen(store, nbdAddress, {
    authority,
    ready,
    limits: budget.nbd,
    volumeMetrics: options.volumeMetrics ?? true,
  });
  startProcessMetrics();
  const unregisterSeries = registerNodeSeries({
    store,
    local,
    dataDir: options.data,
    filesLimit: files.soft,
    http: {
      connections: () => server.connections,
      served: () => server.acceptor.admitted,
      connectionsMax: budget.http.connectionsMax,
    },
    nbd: {
      connections: () => nbd.connections,
      served: () => nbd.connectionsServed,
      connectionsMax: budget.nbd.connectionsMax,
    },
  });
  await member?.start();
  if (member !== null) migrateOnceJoined(store, ready);
  const nbdUrl = "path" in nbd.address
    ? `unix:${nbd.address.path}`
    : `nbd://${nbd.address.hostname}:${nbd.address.port}`;
  const httpUrl = `http://${httpAddress.hostname}:${httpAddress.port}`;
  // The line is built here (no placeholders) so that text and JSON say it alike.
  logger("node").info(
    `atoll ${options.version}: node ${id} serving ${httpUrl} nbd ${nbdUrl}` +
      `${member === null ? "" : ` gossip ${member.address}`}` +
      ` data ${options.data}${
        options.rados === null ? "" : ` engine rados pool ${options.rados.pool}`
      }${token === null ? "" : " (token required)"} ${describeFiles(files)}`,
    {
      node: id,
      http: httpUrl,
      nbd: nbdUrl,
      gossip: member?.address ?? null,
      data: options.data,
      openFilesLimit: files.soft,
    },
  );
  let stopping: Promise<void> | null = null;
  const shutdown = () =>
    stopping ??= (async () => {
      // Stop taking I/O and make what was acknowledged durable while the cluster
      // still counts this node in: once it has left, another node may take its leases.
      await member?.stopBackground();
      await nbd.close();
      await store.flushVolumes();
      await rados?.leases.releaseAll();
      await member?.leave();
      await server.shutdown();
      unregisterSeries();
      await store.close();
    })();
  return { id, httpAddress, shutdown, finished: server.finished };
}

/** The open-files limit for the start line: what is in force, and how it came to be. */
function describeFiles(files: FilesLimit): string {
  const raised = files.raisedFrom === null ? "" : `, raised from ${files.raisedFrom}`;
  const note = files.note === null ? "" : `; ${files.note}`;
  return `open-files limit ${files.soft} (hard ${files.hard}${raised}${note})`;
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

/**
 * Rewrites the images' and snapshots' maps written before maps had pages, once
 * the node has joined its cluster (checked each second; the timer keeps no
 * process alive).
 */
function migrateOnceJoined(store: Store, ready: () => { ready: boolean }): void {
  const log = logger("node");
  const attempt = () => {
    if (!ready().ready) return void Deno.unrefTimer(setTimeout(attempt, 1000));
    store.migrateMaps({ volumes: false }).then(
      (count) => count > 0 && log.info("rewrote {count} maps as pages", { count }),
      (error) => log.warn("maps not rewritten as pages: {error}", { error: String(error) }),
    );
  };
  attempt();
}
