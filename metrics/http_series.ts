/**
 * The HTTP API's series: requests by route template (hono's matched route,
 * never the raw path, so the label stays bounded) and status, their latency,
 * and what uploads brought in. Uploads in progress are read at scrape time
 * (cli/_node_series.ts).
 */
import { Counter, Gauge, Histogram } from "prom-client";
import { registry } from "./registry.ts";

/** Requests answered, by method, route template and status. */
export const httpRequests: Counter<"method" | "route" | "status"> = new Counter({
  name: "atoll_http_requests_total",
  help: "HTTP requests answered, by method, route template and status",
  labelNames: ["method", "route", "status"],
  registers: [registry],
});

/** Time from a request's arrival to its response, by method and route template. */
export const httpRequestDuration: Histogram<"method" | "route"> = new Histogram({
  name: "atoll_http_request_duration_seconds",
  help: "Time from an HTTP request's arrival to its response (uploads: the whole body)",
  labelNames: ["method", "route"],
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600],
  registers: [registry],
});

/** Image bytes received by completed uploads. */
export const uploadBytes: Counter = new Counter({
  name: "atoll_upload_bytes_total",
  help: "Image bytes received by completed uploads",
  registers: [registry],
});

/** Bytes of blocks that completed uploads stored for the first time. */
export const uploadNewBytes: Counter = new Counter({
  name: "atoll_upload_new_bytes_total",
  help: "Bytes of blocks that completed uploads stored for the first time (the rest was " +
    "deduplicated or zero)",
  registers: [registry],
});

/**
 * The share of uploaded bytes since start that needed no new block (already
 * stored, or zero): 1 - new / received; 0 before the first upload.
 */
export const uploadDedupRatio: Gauge = new Gauge({
  name: "atoll_upload_dedup_ratio",
  help: "Share of the bytes uploaded since start that stored no new block (deduplicated or " +
    "zero): 1 - atoll_upload_new_bytes_total / atoll_upload_bytes_total",
  registers: [registry],
  async collect() {
    const [received, stored] = await Promise.all([uploadBytes.get(), uploadNewBytes.get()]);
    const receivedBytes = received.values[0]?.value ?? 0;
    const storedBytes = stored.values[0]?.value ?? 0;
    this.set(receivedBytes === 0 ? 0 : 1 - storedBytes / receivedBytes);
  },
});
