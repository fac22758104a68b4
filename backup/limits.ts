/**
 * Every limit of backups to S3, named with its unit and `Max` last, kept
 * together; their relationships are asserted at load time. docs/operations.md
 * ("Backups to S3") lists them for operators.
 */
import { assert } from "../core/assert.ts";

/** Time one S3 request may take before it is abandoned (and retried by the client). */
export const s3RequestTimeoutMs = 120_000;
/** Blocks read, checked and sent at once by one push or restore (each holds a block buffer). */
export const transfersMax = 8;
/**
 * Map entries a push names in one pending manifest before it checks the store
 * for them (a run); a run keeps the bytes of the objects it read to hash them.
 */
export const pendingEntriesMax = 8;
/**
 * Runs of one push at once: one reads and hashes while another sends. A push
 * holds at most runsInFlightMax * pendingEntriesMax blocks in memory (64 MiB
 * with 4 MiB blocks).
 */
export const runsInFlightMax = 2;
/**
 * Age after which prune ignores (and removes) a pending manifest: its push is
 * dead. A push that runs for half of this fails before writing its manifest,
 * so that a running push's pending manifests are always honoured; run again,
 * it resumes.
 */
export const pendingAgeMsMax = 7 * 24 * 3600_000;
/** A push gives up (and can be run again) once it has run this long. */
export const pushDurationMsMax = pendingAgeMsMax / 2;
/**
 * A running prune rewrites its marker this often; pushes wait while a marker
 * younger than {@linkcode pruneMarkerAgeMsMax} exists.
 */
export const pruneHeartbeatMs = 30_000;
/**
 * A prune marker older than this (by the store's clock) belongs to a dead
 * prune; a live prune stops deleting before its own marker is this old.
 */
export const pruneMarkerAgeMsMax = 300_000;
/** Longest time a push waits for running prunes to end before it fails. */
export const pruneWaitMsMax = 3600_000;
/** Pause between two looks at the prune markers while a push waits. */
export const pruneWaitPollMs = 1_000;
/** Longest manifest or pending manifest a reader accepts. */
export const manifestBytesMax = 16 * 1024 * 1024;

assert(pushDurationMsMax < pendingAgeMsMax);
assert(pruneHeartbeatMs * 4 <= pruneMarkerAgeMsMax);
assert(s3RequestTimeoutMs < pruneMarkerAgeMsMax - pruneHeartbeatMs);
