/**
 * The atoll command: `atoll serve` runs a node; the other subcommands are
 * clients of a node's HTTP API. The same file is also the hash workers' entry
 * when Atoll runs as one bundled file (see wasm/hash_pool.ts).
 */
import { parseArgs } from "node:util";
import { isWorkerContext, serveHashJobs } from "./wasm/hash_worker.ts";
import { serve } from "./cli/serve.ts";
import { clientUsage, runClientCommand } from "./cli/commands.ts";
import { headerTimeoutMsDefault } from "./net/mod.ts";
import { configureLogging, logger, parseLogFormat, parseLogLevel } from "./log/mod.ts";

/** Version of this build. */
export const version = "0.1.0";

const serveUsage = `  atoll serve [--data DIR] [--http HOST:PORT] [--nbd HOST:PORT|unix:PATH]
              [--token-file F] [--zone NAME] [--hash-engine wasm|native]
              [--gossip HOST:PORT --cluster-key-file F [--join HOST:PORT,...]] [--weight W]
              [--replicas N] [--dead-grace SECONDS] [--heal-interval SECONDS]
              [--gc-min-age SECONDS] [--gc-settle SECONDS] [--read-cache-mib N]
              [--header-timeout SECONDS]
              [--engine local|rados --ceph-conf FILE --pool NAME [--ceph-id NAME]
               [--ceph-namespace NAME]]
              [--log-format text|json] [--log-level debug|info|warning|error]
              [--fault-file F (testing: no cluster traffic while F exists)]`;

const usage = `atoll ${version}: storage for VM images and volumes

${serveUsage}
${clientUsage.replace(/^usage:\n/, "")}`;

async function main(args: string[]): Promise<number> {
  if (args.length === 0 || args[0] === "--help" || args[0] === "-h" || args[0] === "help") {
    console.log(usage);
    return args.length === 0 ? 2 : 0;
  }
  if (args[0] === "--version") {
    console.log(version);
    return 0;
  }
  if (args[0] !== "serve") return await runClientCommand(args);
  if (args.includes("--help") || args.includes("-h")) {
    console.log(`usage:\n${serveUsage}\n\nSee README.md and docs/operations.md for each flag.`);
    return 0;
  }
  const { values } = parseArgs({
    args: args.slice(1),
    options: {
      data: { type: "string", default: "./atoll-data" },
      http: { type: "string", default: "127.0.0.1:8080" },
      nbd: { type: "string", default: "127.0.0.1:10809" },
      "token-file": { type: "string" },
      zone: { type: "string" },
      gossip: { type: "string" },
      join: { type: "string" },
      "cluster-key-file": { type: "string" },
      weight: { type: "string", default: "1" },
      replicas: { type: "string", default: "3" },
      "dead-grace": { type: "string", default: "60" },
      "heal-interval": { type: "string", default: "5" },
      "fault-file": { type: "string" },
      "gc-min-age": { type: "string", default: "60" },
      "gc-settle": { type: "string", default: "10" },
      "read-cache-mib": { type: "string", default: "256" },
      "hash-engine": { type: "string", default: "wasm" },
      "header-timeout": { type: "string", default: String(headerTimeoutMsDefault / 1000) },
      "log-format": { type: "string", default: "text" },
      "log-level": { type: "string", default: "info" },
      engine: { type: "string", default: "local" },
      "ceph-conf": { type: "string" },
      pool: { type: "string" },
      "ceph-id": { type: "string" },
      "ceph-namespace": { type: "string", default: "atoll" },
    },
    strict: true,
  });
  configureLogging({
    format: parseLogFormat(values["log-format"]),
    level: parseLogLevel(values["log-level"]),
  });
  const hashEngine = values["hash-engine"];
  if (hashEngine !== "wasm" && hashEngine !== "native") {
    throw new TypeError(`Cannot use --hash-engine ${hashEngine}: expected wasm or native`);
  }
  const node = await serve({
    data: values.data,
    http: values.http,
    nbd: values.nbd,
    tokenFile: values["token-file"] ?? null,
    zone: values.zone ?? null,
    gossip: values.gossip ?? null,
    join: values.join?.split(",").filter((address) => address !== "") ?? [],
    clusterKeyFile: values["cluster-key-file"] ?? null,
    weight: parseWeight(values.weight),
    replicas: parseCount(values.replicas, "--replicas", 1, 9),
    deadGraceMs: parseSeconds(values["dead-grace"], "--dead-grace") * 1000,
    healIntervalMs: parseSeconds(values["heal-interval"], "--heal-interval") * 1000,
    faultFile: values["fault-file"] ?? null,
    gcMinAgeMs: parseSeconds(values["gc-min-age"], "--gc-min-age") * 1000,
    gcSettleMs: parseSeconds(values["gc-settle"], "--gc-settle") * 1000,
    readCacheBytes: parseCount(values["read-cache-mib"], "--read-cache-mib", 0, 1 << 20) * 1024 *
      1024,
    hashEngine,
    rados: parseRados(values),
    headerTimeoutMs: parseSeconds(values["header-timeout"], "--header-timeout") * 1000,
    version,
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      logger("node").info("{signal}, shutting down", { signal });
      node.shutdown().then(() => Deno.exit(0));
    });
  }
  await node.finished;
  return 0;
}

/** `--engine` and its Ceph flags: the RADOS options, or null for local files. */
function parseRados(values: {
  engine: string;
  "ceph-conf"?: string;
  pool?: string;
  "ceph-id"?: string;
  "ceph-namespace": string;
}) {
  const cephFlags = ["ceph-conf", "pool", "ceph-id"] as const;
  if (values.engine === "local") {
    const given = cephFlags.filter((flag) => values[flag] !== undefined);
    if (given.length > 0) {
      throw new TypeError(`Cannot use --${given[0]}: it applies only with --engine rados`);
    }
    return null;
  }
  if (values.engine !== "rados") {
    throw new TypeError(`Cannot use --engine ${values.engine}: expected local or rados`);
  }
  const conf = values["ceph-conf"], pool = values.pool;
  if (conf === undefined || pool === undefined) {
    throw new TypeError("Cannot use --engine rados: --ceph-conf FILE and --pool NAME are required");
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(values["ceph-namespace"])) {
    throw new TypeError(
      `Cannot use --ceph-namespace ${values["ceph-namespace"]}: not a plain name`,
    );
  }
  return { conf, pool, id: values["ceph-id"] ?? null, namespace: values["ceph-namespace"] };
}

function parseWeight(text: string): number {
  const weight = Number(text);
  if (!(weight > 0 && weight <= 1e6)) {
    throw new TypeError(`Cannot use --weight ${text}: expected a number in (0, 1e6]`);
  }
  return weight;
}

function parseCount(text: string, flag: string, min: number, max: number): number {
  const count = Number(text);
  if (!Number.isInteger(count) || count < min || count > max) {
    throw new TypeError(`Cannot use ${flag} ${text}: expected a whole number in [${min}, ${max}]`);
  }
  return count;
}

function parseSeconds(text: string, flag: string): number {
  const seconds = Number(text);
  if (!(seconds >= 0.1 && seconds <= 86_400)) {
    throw new TypeError(`Cannot use ${flag} ${text}: expected seconds in [0.1, 86400]`);
  }
  return seconds;
}

if (import.meta.main) {
  if (isWorkerContext()) {
    serveHashJobs();
  } else {
    try {
      Deno.exit(await main(Deno.args));
    } catch (error) {
      console.error(`atoll: ${error instanceof Error ? error.message : error}`);
      Deno.exit(1);
    }
  }
}
