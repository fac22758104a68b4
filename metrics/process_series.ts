/**
 * The process's own figures: prom-client's default metrics, which run on Deno
 * through its Node compatibility: CPU (`process_cpu_seconds_total`), memory
 * (`process_resident_memory_bytes`, `nodejs_heap_size_used_bytes`, ...),
 * descriptors (`process_open_fds`, `process_max_fds`, read from /proc),
 * event-loop lag (`nodejs_eventloop_lag_seconds` and its percentiles, from
 * `perf_hooks.monitorEventLoopDelay`). The garbage collector's durations
 * (`nodejs_gc_duration_seconds`) never appear: Deno does not report GC to
 * `PerformanceObserver`. The three `nodejs_active_*_total` totals are
 * dropped: gauges named like counters, which promtool rejects (the same
 * figures stay, by type, in `nodejs_active_handles` and its kin).
 */
import { collectDefaultMetrics } from "prom-client";
import { registry } from "./registry.ts";

/**
 * Resolution of the event-loop delay monitor, milliseconds: it runs a timer
 * this often and records how late each fires. At 10 ms (prom-client's
 * default) those wake-ups were two thirds of an idle node's CPU (0.0085 core
 * against 0.0028 at 100 ms, 60 s from /proc); at 100 ms a stall of 100 ms or
 * more is always seen, a shorter one in proportion to its length.
 */
const eventLoopMonitoringPrecisionMs = 100;
/** Default metrics that are gauges named `_total` (promtool rejects them). */
const misnamedDefaults = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];
let started = false;

/** Starts collecting the process's figures (once per process; later calls do nothing). */
export function startProcessMetrics(): void {
  if (started) return;
  started = true;
  collectDefaultMetrics({
    register: registry,
    eventLoopMonitoringPrecision: eventLoopMonitoringPrecisionMs,
  });
  for (const name of misnamedDefaults) registry.removeSingleMetric(name);
}
