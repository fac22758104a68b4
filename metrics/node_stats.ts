/**
 * One node's figures for the dashboard (`GET /v1/stats`): capacity, load,
 * healing and the per-volume I/O counters, read from the same registry and
 * volume table that `/metrics` renders, as JSON a browser reads without
 * parsing the Prometheus text. Counters are cumulative: a reader takes rates
 * from two samples of one node, whose `sampledAtMs` are on that node's
 * monotonic clock.
 */
import { loadavg } from "node:os";
import { registry } from "./registry.ts";
import { openVolumes, volumeOperationNames } from "./volume_stats.ts";

/**
 * Series summed into {@linkcode NodeStats.figures}, by the name the figure
 * takes there. CPU is read as its user and system parts, in that order:
 * prom-client updates all three CPU counters in the user one's `collect`.
 */
const figureSeries = {
  diskFreeBytes: "atoll_data_disk_free_bytes",
  diskSizeBytes: "atoll_data_disk_size_bytes",
  storedBytes: "atoll_stored_bytes",
  storedBlocks: "atoll_stored_blocks",
  nbdConnections: "atoll_nbd_connections_open",
  httpConnections: "atoll_http_connections_open",
  uploadsInProgress: "atoll_uploads_in_progress",
  imagesLogicalBytes: "atoll_images_logical_bytes",
  volumesProvisionedBytes: "atoll_volumes_provisioned_bytes",
  volumesAllocatedBytes: "atoll_volumes_allocated_bytes",
  uploadDedupRatio: "atoll_upload_dedup_ratio",
  residentMemoryBytes: "process_resident_memory_bytes",
  cpuSeconds: ["process_cpu_user_seconds_total", "process_cpu_system_seconds_total"],
  eventLoopLagSeconds: "nodejs_eventloop_lag_seconds",
  healUnderReplicated: "atoll_heal_under_replicated",
  healBlocksCopied: "atoll_heal_blocks_copied_total",
  healObjectsCopied: "atoll_heal_objects_copied_total",
  healPasses: "atoll_heal_passes_total",
  gcDeletedBlocks: "atoll_gc_deleted_blocks_total",
} as const satisfies Record<string, string | readonly string[]>;

/** A figure's name in {@linkcode NodeStats.figures}. */
export type FigureName = keyof typeof figureSeries;

/** The cumulative I/O counters of one volume open over NBD on a node. */
export interface VolumeCounters {
  name: string;
  /** Requests completed, by operation (`operations` names them). */
  requests: number[];
  bytes: number[];
  latencySumSeconds: number[];
  inFlight: number;
}

/** What one node reports of itself. */
export interface NodeStats {
  /** This node's monotonic clock (ms) when sampled: rates divide by its differences. */
  sampledAtMs: number;
  /** One-minute load average of the host. */
  loadAverage: number;
  /** Figures of the series above; absent when the node has no such series (no cluster). */
  figures: Partial<Record<FigureName, number>>;
  /** The operations the volumes' arrays are indexed by. */
  operations: readonly string[];
  volumes: VolumeCounters[];
}

/** This node's figures now (reads the registry's series, which may scan in the background). */
export async function nodeStats(): Promise<NodeStats> {
  const figures: Partial<Record<FigureName, number>> = {};
  for (const [figure, names] of Object.entries(figureSeries)) {
    for (const name of typeof names === "string" ? [names] : names) {
      const metric = registry.getSingleMetric(name);
      if (metric === undefined) continue;
      const { values } = await metric.get();
      const sum = values.reduce((total, sample) => total + sample.value, 0);
      figures[figure as FigureName] = (figures[figure as FigureName] ?? 0) + sum;
    }
  }
  const volumes: VolumeCounters[] = [];
  for (const stats of openVolumes.values()) {
    volumes.push({
      name: stats.name,
      requests: [...stats.operations],
      bytes: [...stats.bytes],
      latencySumSeconds: [...stats.latencySumSeconds],
      inFlight: stats.inFlight,
    });
  }
  return {
    sampledAtMs: performance.now(),
    loadAverage: loadavg()[0],
    figures,
    operations: volumeOperationNames,
    volumes,
  };
}
