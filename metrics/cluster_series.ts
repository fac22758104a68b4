/**
 * Cluster series timed where the work runs. The cluster's counters (healing,
 * leases, refusals) live in its parts and are read at scrape time
 * (cli/_cluster_series.ts).
 */
import { Histogram } from "prom-client";
import { registry } from "./registry.ts";

/** Time of a metadata read or change through CASPaxos, by operation (read, change). */
export const metadataRoundDuration: Histogram<"operation"> = new Histogram({
  name: "atoll_cluster_metadata_round_duration_seconds",
  help: "Time of a metadata read or change on the metadata voters (one CASPaxos round, " +
    "more when contended), by operation",
  labelNames: ["operation"],
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
  registers: [registry],
});
