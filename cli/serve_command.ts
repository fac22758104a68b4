/**
 * `atoll serve` as a command: its settings from flags, environment, config
 * file and defaults (serve_settings.ts), the log set up from them, then a node
 * (serve.ts) that runs until SIGINT or SIGTERM stops it cleanly.
 *
 * Exit codes: 0 after a clean stop or `--help`, 2 for a bad setting (which a
 * restart would not mend: the systemd unit does not restart on it), 1 for any
 * other failure; each failure is one `atoll: ` line on stderr.
 */
import { UsageError } from "./_command_line.ts";
import { serve, type ServeOptions } from "./serve.ts";
import type { ServeSettings } from "./serve_flags.ts";
import { resolveServeSettings, serveHelp } from "./serve_settings.ts";
import { version } from "./version.ts";
import { configureLogging, logger } from "../log/mod.ts";

/** Runs `atoll serve ARGS` until the node stops; returns the exit code. */
export async function runServe(args: string[]): Promise<number> {
  let resolved;
  try {
    resolved = await resolveServeSettings({ args, env: Deno.env.toObject() });
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`atoll: ${error.message}`);
    return 2;
  }
  if (resolved === null) {
    console.log(serveHelp());
    return 0;
  }
  const { settings, warnings } = resolved;
  configureLogging({ format: settings["log-format"], level: settings["log-level"] });
  for (const warning of warnings) logger("node").warn(warning);
  const node = await serve(serveOptions(settings));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      logger("node").info("{signal}, shutting down", { signal });
      node.shutdown().then(() => Deno.exit(0));
    });
  }
  await node.finished;
  return 0;
}

/** The settings as the node takes them: milliseconds, bytes, nulls for what is off. */
function serveOptions(settings: ServeSettings): ServeOptions {
  return {
    data: settings.data,
    http: settings.http,
    nbd: settings.nbd,
    tokenFile: settings["token-file"],
    zone: settings.zone,
    gossip: settings.gossip,
    join: settings.join,
    clusterKeyFile: settings["cluster-key-file"],
    weight: settings.weight,
    replicas: settings.replicas,
    deadGraceMs: settings["dead-grace"] * 1000,
    healIntervalMs: settings["heal-interval"] * 1000,
    faultFile: settings["fault-file"],
    gcMinAgeMs: settings["gc-min-age"] * 1000,
    gcSettleMs: settings["gc-settle"] * 1000,
    readCacheBytes: settings["read-cache-mib"] * 1024 * 1024,
    hashEngine: settings["hash-engine"],
    headerTimeoutMs: settings["header-timeout"] * 1000,
    volumeMetrics: settings["volume-metrics"] === "on",
    rados: radosOptions(settings),
    version,
  };
}

/** `--engine` and its Ceph flags: the RADOS options, or null for local files. */
function radosOptions(settings: ServeSettings): ServeOptions["rados"] {
  const cephFlags = ["ceph-conf", "pool", "ceph-id"] as const;
  if (settings.engine === "local") {
    const given = cephFlags.filter((flag) => settings[flag] !== null);
    if (given.length > 0) {
      throw new TypeError(`Cannot use --${given[0]}: it applies only with --engine rados`);
    }
    return null;
  }
  const conf = settings["ceph-conf"], pool = settings.pool;
  if (conf === null || pool === null) {
    throw new TypeError("Cannot use --engine rados: --ceph-conf FILE and --pool NAME are required");
  }
  return { conf, pool, id: settings["ceph-id"], namespace: settings["ceph-namespace"] };
}
