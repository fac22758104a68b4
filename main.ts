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
              [--header-timeout SECONDS] [--volume-metrics on|off]
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
      "volume-metrics": { type: "string", default: "on" },
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
    headerTimeoutMs: parseSeconds(values["header-timeout"], "--header-timeout") * 1000,
    volumeMetrics: parseOnOff(values["volume-metrics"], "--volume-metrics"),
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

function parseOnOff(text: string, flag: string): boolean {
  if (text !== "on" && text !== "off") {
    throw new TypeError(`Cannot use ${flag} ${text}: expected on or off`);
  }
  return text === "on";
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
