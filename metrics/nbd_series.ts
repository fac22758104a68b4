/**
 * Node-wide NBD series that the NBD server bumps when something happens (a
 * failed handshake, an error reply): rare events, so prom-client's labelled
 * counters are cheap enough. Connections open and served are read from the
 * accept loop at scrape time (cli/_node_series.ts).
 */
import { Counter } from "prom-client";
import { registry } from "./registry.ts";

/** Why a handshake ended without a session (the `reason` label). */
export const handshakeFailureReasons = [
  /** The client broke the protocol (bad magic, unknown flags, too many options). */
  "protocol",
  /** The client asked for an export that does not exist. */
  "unknown_export",
  /** The node was not ready (not joined to its cluster yet). */
  "not_ready",
  /** The export exists but could not be opened (the reply and the log say why). */
  "open_failed",
  /** The handshake did not finish in time. */
  "timeout",
  /** The client hung up in the middle. */
  "disconnected",
  /** Anything else (a bug or a storage failure; the log says which). */
  "error",
] as const;
/** One of {@linkcode handshakeFailureReasons}. */
export type HandshakeFailureReason = (typeof handshakeFailureReasons)[number];

/** Handshakes that ended without a session, by reason. */
export const nbdHandshakeFailures: Counter<"reason"> = new Counter({
  name: "atoll_nbd_handshake_failures_total",
  help: "NBD handshakes that ended without a session, by reason",
  labelNames: ["reason"],
  registers: [registry],
});
for (const reason of handshakeFailureReasons) nbdHandshakeFailures.inc({ reason }, 0);

/**
 * Error replies by NBD error name (`EIO`, `EINVAL`, `ENOSPC`, ...); the NBD
 * server declares every name it may send at zero when it loads.
 */
export const nbdErrors: Counter<"error"> = new Counter({
  name: "atoll_nbd_errors_total",
  help: "NBD requests answered with an error, by NBD error (EIO, EINVAL, ENOSPC, ...)",
  labelNames: ["error"],
  registers: [registry],
});

/**
 * Requests of volumes' handles that waited for the cluster (too few members
 * answered: core/patient_authority.ts), by operation and outcome (served once
 * it answered again, or failed when the wait ran out).
 */
export const requestsWaited: Counter<"operation" | "outcome"> = new Counter({
  name: "atoll_volume_requests_waited_total",
  help: "Volume requests (NBD, HTTP data) that waited for the cluster because too few members " +
    "answered, by operation and outcome (served, or failed once the wait ran out)",
  labelNames: ["operation", "outcome"],
  registers: [registry],
});
