/**
 * Every limit of the node's listeners (HTTP API, NBD, cluster request port),
 * named with its unit and `Max` last, kept together so that their
 * relationships are asserted once, at load time. README.md "Limits" lists them
 * for operators.
 *
 * Connection caps are sized from the open-files limit at start
 * ({@linkcode listenerBudget}): a node on a host with the common limit of 1024
 * must refuse connections before it runs out of descriptors, never die of it.
 */
import { assert } from "../core/assert.ts";
import { openFilesMax } from "../core/limits.ts";

/** Time a client has to send a whole HTTP request head, from connecting or from its first byte. */
export const headerTimeoutMsDefault = 10_000;
/**
 * Time a keep-alive HTTP connection may wait for its next request. Longer than
 * the 90 s after which Deno's fetch drops an idle pooled connection, so that a
 * peer's client always closes first and never sends into a connection closing
 * under it.
 */
export const idleTimeoutMsDefault = 120_000;
/** Time a request body read or a response write may make no progress before the connection is cut. */
export const stallTimeoutMs = 60_000;
/**
 * Time the cluster port gives a connection to deliver a whole request (head and
 * body) from its first byte: peers send theirs at once, a 40 MiB RPC body in
 * well under a second on any LAN.
 */
export const clusterRequestTimeoutMs = 5_000;
/** Longest HTTP request head: request line and header lines. */
export const headBytesMax = 64 * 1024;
/** Header lines in one request head. */
export const headerLinesMax = 256;
/** Longest chunk-size line of a chunked request body, extensions included. */
export const chunkLineBytesMax = 4096;
/**
 * Time a connection whose request body was not read (an early error answer)
 * is drained after the answer before it is closed, so that the client reads
 * the answer instead of a reset.
 */
export const lingerTimeoutMs = 2_000;
/** First pause after a failed accept (EMFILE, ENFILE, ENOMEM); it doubles up to the next. */
export const acceptBackoffMsMin = 20;
/** Longest pause between accept attempts while they fail. */
export const acceptBackoffMsMax = 1_000;

/** How many connections one listener serves at once, in all and from one remote address. */
export interface ListenerLimits {
  connectionsMax: number;
  connectionsPerAddressMax: number;
}

/** HTTP API connections at most, when the open-files limit allows. */
export const httpConnectionsMax = 1024;
/** HTTP API connections from one address (a management host, or this host's own clients). */
export const httpConnectionsPerAddressMax = 256;
/** NBD connections at most, when the open-files limit allows. */
export const nbdConnectionsMax = 4096;
/**
 * NBD connections from one address. The hypervisor's own QEMUs all connect
 * from loopback, so this is large: it stops one remote host, not this one.
 */
export const nbdConnectionsPerAddressMax = 2048;
/** Cluster request port connections at most (every peer's pool), when the limit allows. */
export const clusterConnectionsMax = 2048;
/** Cluster request port connections from one address (one peer's pooled connections). */
export const clusterConnectionsPerAddressMax = 256;

/**
 * Descriptors kept for everything that is not a connection or an engine file:
 * stdio, the event loop, hash workers, the acceptor log, the fetch client's
 * connections to peers.
 */
export const filesReserved = 192;
/** Open-files limit below which a node refuses to start. */
export const filesLimitMin = 512;

/** What a node's open-files limit allows each part of it. */
export interface ListenerBudget {
  /** Files the local engine keeps open (its descriptor cache). */
  engineFilesMax: number;
  http: ListenerLimits;
  nbd: ListenerLimits;
  cluster: ListenerLimits;
}

/**
 * Splits `filesLimit` (the soft RLIMIT_NOFILE) between the engine's files and
 * the listeners: a quarter at most for the engine, {@linkcode filesReserved}
 * kept, and of the rest a half for NBD (the VMs' disks) and a quarter each for
 * HTTP and the cluster port, each capped by its own maximum.
 */
export function listenerBudget(filesLimit: number): ListenerBudget {
  if (filesLimit < filesLimitMin) {
    throw new RangeError(
      `Cannot start: the open-files limit is ${filesLimit}; a node needs at least ` +
        `${filesLimitMin} (raise it with ulimit -n or LimitNOFILE=)`,
    );
  }
  const engineFilesMax = Math.min(openFilesMax, Math.floor(filesLimit / 4));
  const connections = filesLimit - engineFilesMax - filesReserved;
  const limits = (share: number, max: number, perAddressMax: number): ListenerLimits => {
    const connectionsMax = Math.min(max, Math.floor(connections * share));
    return {
      connectionsMax,
      connectionsPerAddressMax: Math.min(perAddressMax, connectionsMax),
    };
  };
  const budget = {
    engineFilesMax,
    http: limits(1 / 4, httpConnectionsMax, httpConnectionsPerAddressMax),
    nbd: limits(1 / 2, nbdConnectionsMax, nbdConnectionsPerAddressMax),
    cluster: limits(1 / 4, clusterConnectionsMax, clusterConnectionsPerAddressMax),
  };
  const used = engineFilesMax + filesReserved + budget.http.connectionsMax +
    budget.nbd.connectionsMax + budget.cluster.connectionsMax;
  assert(used <= filesLimit, `the budget (${used} files) fits the limit (${filesLimit})`);
  return budget;
}

assert(headerTimeoutMsDefault < idleTimeoutMsDefault);
assert(clusterRequestTimeoutMs <= headerTimeoutMsDefault);
assert(acceptBackoffMsMin < acceptBackoffMsMax);
assert(chunkLineBytesMax < headBytesMax);
assert(
  listenerBudget(filesLimitMin).http.connectionsMax >= 32,
  "the smallest budget still serves a few dozen clients per listener",
);
