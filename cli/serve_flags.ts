/**
 * The options of `atoll serve`, listed once: each one's name, value, default,
 * check and help. The command line (`--token-file F`), the environment
 * (`ATOLL_TOKEN_FILE`) and the config file (`token-file = "F"`) are all read
 * against this table, and `atoll serve --help` is printed from it
 * (serve_settings.ts); serve_command.ts turns the values into `ServeOptions`.
 */
import { parseHostPort } from "../core/address.ts";
import { parseNbdAddress } from "../nbd/server.ts";
import { headerTimeoutMsDefault } from "../net/mod.ts";
import { logFormats, logLevels } from "../log/mod.ts";
import type { HashEngineName } from "../wasm/hash_pool.ts";

const hashEngines: readonly HashEngineName[] = ["wasm", "native"];

/** How a value is written: a string, a number, or a list (comma-separated on the command line). */
export type FlagKind = "text" | "number" | "list";

/** One option of `atoll serve`. */
export interface ServeFlag<T> {
  kind: FlagKind;
  /** What the usage shows for the value: `DIR`, `HOST:PORT`, `SECONDS`. */
  value: string;
  /** The value when no source gives one; null: the option is off. */
  default: T;
  help: string;
  /** Why a value is refused (`expected ...`), or null when it is fine. */
  refuse(value: NonNullable<T>): string | null;
}

interface Spec<T, D> {
  value: string;
  default: D;
  help: string;
  refuse?: (value: T) => string | null;
}

const fine = () => null;

function text<D extends string | null>(spec: Spec<string, D>): ServeFlag<string | D> {
  return { kind: "text", refuse: fine, ...spec };
}

function number(spec: Spec<number, number>): ServeFlag<number> {
  return { kind: "number", refuse: fine, ...spec };
}

function list(spec: Spec<string[], string[]>): ServeFlag<string[]> {
  return { kind: "list", refuse: fine, ...spec };
}

/** One of a few words; the usage shows them as the value (`text|json`). */
function choice<C extends string>(choices: readonly C[], spec: Spec<C, C>): ServeFlag<C> {
  const refuse = (value: string) =>
    (choices as readonly string[]).includes(value) ? null : `expected ${choices.join(" or ")}`;
  return { kind: "text", refuse, ...spec };
}

function hostPort(value: string): string | null {
  try {
    parseHostPort(value, "");
    return null;
  } catch {
    return "expected HOST:PORT";
  }
}

function wholeNumber(min: number, max: number): (value: number) => string | null {
  return (value) =>
    Number.isInteger(value) && value >= min && value <= max
      ? null
      : `expected a whole number in [${min}, ${max}]`;
}

function seconds(value: number): string | null {
  return value >= 0.1 && value <= 86_400 ? null : "expected seconds in [0.1, 86400]";
}

/** The options of `atoll serve` by name, in the order `--help` lists them. */
export const serveFlags = {
  data: text({ value: "DIR", default: "./atoll-data", help: "data directory" }),
  http: text({
    value: "HOST:PORT",
    default: "127.0.0.1:8080",
    help: "HTTP API listener",
    refuse: hostPort,
  }),
  nbd: text({
    value: "HOST:PORT|unix:PATH",
    default: "127.0.0.1:10809",
    help: "NBD listener: a TCP address or a unix socket",
    refuse: (value) => {
      try {
        parseNbdAddress(value);
        return null;
      } catch {
        return "expected HOST:PORT or unix:PATH";
      }
    },
  }),
  "token-file": text({
    value: "F",
    default: null,
    help: "file of the API token every /v1 request must then bear",
  }),
  zone: text({ value: "NAME", default: null, help: "failure zone (rack, room) for placement" }),
  "hash-engine": choice(hashEngines, {
    value: hashEngines.join("|"),
    default: "wasm",
    help: "SHA-256 in WASM workers or Deno's native crypto",
  }),
  gossip: text({
    value: "HOST:PORT",
    default: null,
    help: "cluster port (gossip and links); none: a single node",
    refuse: hostPort,
  }),
  "cluster-key-file": text({
    value: "F",
    default: null,
    help: "the cluster key, the same on every member (needed with --gossip)",
  }),
  join: list({
    value: "HOST:PORT,...",
    default: [],
    help: "members to join (in the config file, a list of strings)",
    refuse: (addresses) => addresses.map(hostPort).find((why) => why !== null) ?? null,
  }),
  weight: number({
    value: "W",
    default: 1,
    help: "relative capacity for placement",
    refuse: (weight) => weight > 0 && weight <= 1e6 ? null : "expected a number in (0, 1e6]",
  }),
  replicas: number({
    value: "N",
    default: 3,
    help: "copies of each block and object in a cluster",
    refuse: wholeNumber(1, 9),
  }),
  "dead-grace": number({
    value: "SECONDS",
    default: 60,
    help: "how long a dead member keeps its place before its share is copied",
    refuse: seconds,
  }),
  "heal-interval": number({
    value: "SECONDS",
    default: 5,
    help: "pause between healing passes",
    refuse: seconds,
  }),
  "gc-min-age": number({
    value: "SECONDS",
    default: 60,
    help: "in a cluster, blocks younger than this are never collected",
    refuse: seconds,
  }),
  "gc-settle": number({
    value: "SECONDS",
    default: 10,
    help: "in a cluster, the pause between a collection's two marks",
    refuse: seconds,
  }),
  "read-cache-mib": number({
    value: "N",
    default: 1024,
    help: "MiB of other members' object pages a lease holder keeps (0: none)",
    refuse: wholeNumber(0, 1 << 20),
  }),
  "header-timeout": number({
    value: "SECONDS",
    default: headerTimeoutMsDefault / 1000,
    help: "time an HTTP client has to send a request head",
    refuse: seconds,
  }),
  engine: choice(["local", "rados"] as const, {
    value: "local|rados",
    default: "local",
    help: "where data lives: this node's files (and the ring), or a Ceph RADOS pool",
  }),
  "ceph-conf": text({ value: "FILE", default: null, help: "with --engine rados: ceph.conf" }),
  pool: text({ value: "NAME", default: null, help: "with --engine rados: the RADOS pool" }),
  "ceph-id": text({
    value: "NAME",
    default: null,
    help: "with --engine rados: the Ceph client id (client.NAME)",
  }),
  "ceph-namespace": text({
    value: "NAME",
    default: "atoll",
    help: "with --engine rados: the pool's namespaces start with this",
    refuse: (value) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value) ? null : "not a plain name",
  }),
  "volume-metrics": choice(["on", "off"] as const, {
    value: "on|off",
    default: "on",
    help: "count and time each volume's NBD requests in /metrics",
  }),
  "log-format": choice(logFormats, {
    value: logFormats.join("|"),
    default: "text",
    help: "log lines for people or JSON lines for collectors",
  }),
  "log-level": choice(logLevels, {
    value: logLevels.join("|"),
    default: "info",
    help: "the least severe log lines written",
  }),
  "fault-file": text({
    value: "F",
    default: null,
    help: "testing: no cluster traffic while F exists",
  }),
};

/** The name of a `serve` option. */
export type ServeFlagName = keyof typeof serveFlags;

/** The values of every `serve` option, typed by option. */
export type ServeSettings = { [K in ServeFlagName]: (typeof serveFlags)[K]["default"] };

/** The environment variable of an option: `ATOLL_` and its name in capitals, `_` for `-`. */
export function envName(name: string): string {
  return `ATOLL_${name.toUpperCase().replaceAll("-", "_")}`;
}
