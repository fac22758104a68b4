/** `atoll serve`: one node with its data directory, HTTP API and (later) NBD and gossip. */
import { join } from "node:path";
import { LocalEngine, Store } from "../core/mod.ts";
import { createApp } from "../http/app.ts";
import { HashPool } from "../wasm/hash_pool.ts";
import { type HashEngineName } from "../wasm/hash_pool.ts";
import { parseHostPort } from "./address.ts";
import { NbdServer, parseNbdAddress } from "../nbd/server.ts";
import { ClusterKey } from "../cluster/auth.ts";
import { ClusterNode } from "../cluster/cluster_node.ts";

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
  const engine = await LocalEngine.open({ dir: options.data });
  const id = await nodeId(options.data);
  const store = new Store({ engine, pool: new HashPool({ engine: options.hashEngine }) });
  let httpAddress = http;
  let cluster: ClusterNode | null = null;
  const app = createApp({
    store,
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
  });
  const listening = Promise.withResolvers<{ hostname: string; port: number }>();
  const server = Deno.serve({
    hostname: http.hostname,
    port: http.port,
    onListen: (address) => listening.resolve(address),
  }, app.fetch);
  httpAddress = await listening.promise;
  const nbd = await NbdServer.listen(store, nbdAddress);
  if (gossip !== null && key !== null) {
    cluster = await ClusterNode.start({
      key,
      bind: gossip,
      join: options.join,
      self: { id, zone: options.zone, weight: options.weight },
    });
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
      await cluster?.leave();
      await nbd.close();
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
