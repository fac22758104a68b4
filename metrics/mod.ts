/**
 * The node's metrics: one Prometheus registry (prom-client) that every layer
 * may reach, the series each layer bumps, and the per-volume figures the NBD
 * hot path keeps without allocating. `GET /metrics` renders
 * {@linkcode metricsText}; docs/operations.md ("Metrics") lists every series.
 *
 * This folder imports nothing of ours, so every folder may import it (core
 * counts collections and copy-ups here, nbd and http their requests).
 *
 * @module
 */
export {
  metricsContentType,
  metricsText,
  registry,
  type Sample,
  type ScrapedSeries,
  scrapedSeries,
} from "./registry.ts";
export {
  latencyBucketsSeconds,
  openVolumes,
  VolumeOperation,
  volumeOperationNames,
  VolumeStats,
  VolumeStatsTable,
} from "./volume_stats.ts";
import "./_volume_series.ts";
export {
  type HandshakeFailureReason,
  handshakeFailureReasons,
  nbdErrors,
  nbdHandshakeFailures,
  requestsWaited,
} from "./nbd_series.ts";
export {
  httpRequestDuration,
  httpRequests,
  uploadBytes,
  uploadDedupRatio,
  uploadNewBytes,
} from "./http_series.ts";
export { gcDeletedBlocks, gcDeletedObjects, gcRuns, type GcTrigger } from "./gc_series.ts";
export {
  coldReads,
  type DirectWriteKind,
  directWrites,
  directWritesAvailable,
  directWritesUnstaged,
  lostWrites,
  readAheads,
} from "./disk_series.ts";
export { startProcessMetrics } from "./process_series.ts";
export { metadataRoundDuration } from "./cluster_series.ts";
export { type FigureName, type NodeStats, nodeStats, type VolumeCounters } from "./node_stats.ts";
