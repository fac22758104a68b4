/**
 * The per-volume series, read from {@linkcode openVolumes} at scrape time.
 *
 * The latency histogram is rendered by prom-client from a small metric object
 * of our own (the registry's metric interface: `name`, `help`, `type`,
 * `get()`), because prom-client's Histogram can only be fed one observation
 * at a time, and feeding it per request is what the hot path must not do.
 */
import type { Metric } from "prom-client";
import { registry, type Sample, scrapedSeries } from "./registry.ts";
import {
  latencyBucketsSeconds,
  openVolumes,
  volumeOperationNames,
  type VolumeStats,
} from "./volume_stats.ts";

function* perOperation(field: (stats: VolumeStats) => Float64Array): Iterable<Sample> {
  for (const stats of openVolumes.values()) {
    const figures = field(stats);
    for (const [index, operation] of volumeOperationNames.entries()) {
      yield [{ volume: stats.name, operation }, figures[index]];
    }
  }
}

scrapedSeries([
  {
    name: "atoll_volumes_open",
    help: "Volumes open over NBD on this node (each has the atoll_volume_* series)",
    type: "gauge",
    read: () => openVolumes.size,
  },
  {
    name: "atoll_volume_requests_total",
    help: "NBD requests completed per volume and operation (read, write, flush, trim, zero)",
    type: "counter",
    labelNames: ["volume", "operation"],
    read: () => perOperation((stats) => stats.operations),
  },
  {
    name: "atoll_volume_bytes_total",
    help: "Bytes read, written, trimmed or zeroed per volume and operation over NBD",
    type: "counter",
    labelNames: ["volume", "operation"],
    read: () => perOperation((stats) => stats.bytes),
  },
  {
    name: "atoll_volume_in_flight_requests",
    help: "NBD requests of the volume running now",
    type: "gauge",
    labelNames: ["volume"],
    read: () => [...openVolumes.values()].map((stats) => [{ volume: stats.name }, stats.inFlight]),
  },
  {
    name: "atoll_volume_copy_ups_total",
    help: "Entries of the volume that a write copied up (copy-on-write of a shared block)",
    type: "counter",
    labelNames: ["volume"],
    read: () => [...openVolumes.values()].map((stats) => [{ volume: stats.name }, stats.copyUps]),
  },
]);

/** What prom-client's registry renders: a value with its labels and series name. */
interface RenderedValue {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

const latencyName = "atoll_volume_request_duration_seconds";

/** The latency histogram of NBD requests per volume and operation. */
const latencyHistogram = {
  name: latencyName,
  help: "Time from an NBD request's arrival to its reply, per volume and operation",
  type: "histogram",
  aggregator: "sum",
  labelNames: ["volume", "operation"],
  reset() {/* the figures belong to the volumes */},
  get() {
    const values: RenderedValue[] = [];
    const bucketsCount = latencyBucketsSeconds.length;
    for (const stats of openVolumes.values()) {
      for (const [index, operation] of volumeOperationNames.entries()) {
        const labels = { volume: stats.name, operation };
        let cumulative = 0;
        for (const [i, bound] of latencyBucketsSeconds.entries()) {
          cumulative += stats.latencyBuckets[index * bucketsCount + i];
          values.push({
            metricName: `${latencyName}_bucket`,
            labels: { ...labels, le: bound },
            value: cumulative,
          });
        }
        const count = stats.operations[index];
        values.push({
          metricName: `${latencyName}_bucket`,
          labels: { ...labels, le: "+Inf" },
          value: count,
        });
        values.push({
          metricName: `${latencyName}_sum`,
          labels,
          value: stats.latencySumSeconds[index],
        });
        values.push({ metricName: `${latencyName}_count`, labels, value: count });
      }
    }
    return Promise.resolve({
      name: latencyName,
      help: latencyHistogram.help,
      type: "histogram",
      values,
      aggregator: "sum",
    });
  },
};
registry.registerMetric(latencyHistogram as unknown as Metric);
