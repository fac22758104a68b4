/**
 * The node's one Prometheus registry (prom-client) and the helper for series
 * read at scrape time from the parts that keep their own figures (the accept
 * loops, the healer, the lease manager): such a series is a prom-client counter
 * or gauge whose `collect()` copies the figures in just before rendering.
 *
 * Names: `atoll_…`, units last (`_seconds`, `_bytes`), counters end in `_total`
 * (promtool's rules; tests/metrics_test.ts runs `promtool check metrics`).
 */
import { Counter, Gauge, Registry } from "prom-client";

/** The registry `/metrics` renders: every series of the process registers here. */
export const registry: Registry = new Registry();

/** The content type of {@linkcode metricsText}: the Prometheus text format 0.0.4. */
export const metricsContentType: string = Registry.PROMETHEUS_CONTENT_TYPE;

/** Every series of the process in the Prometheus text format. */
export function metricsText(): Promise<string> {
  return registry.metrics();
}

/** One labelled value of a series read at scrape time. */
export type Sample = [labels: Record<string, string>, value: number];

/** A series read at scrape time (see {@linkcode scrapedSeries}). */
export interface ScrapedSeries {
  name: string;
  help: string;
  type: "counter" | "gauge";
  labelNames?: readonly string[];
  /** The value now (no labels), or every labelled value now; may wait (a scan). */
  read: () => number | Iterable<Sample> | Promise<number | Iterable<Sample>>;
}

/**
 * Registers series whose values are read at each scrape; the result removes
 * them (a node that shuts down, or a test that builds a second node in-process).
 *
 * @example
 * ```ts
 * const unregister = scrapedSeries([
 *   { name: "atoll_nbd_connections_open", help: "NBD connections open", type: "gauge",
 *     read: () => server.connections },
 * ]);
 * ```
 */
export function scrapedSeries(series: ScrapedSeries[]): () => void {
  for (const one of series) {
    const { name, help, labelNames = [], read } = one;
    const config = { name, help, labelNames, registers: [registry] };
    if (one.type === "counter") {
      new Counter({
        ...config,
        // Read first, then reset and fill at once: two scrapes at the same time
        // must not both add to the same fresh counter.
        async collect() {
          const value = await read();
          this.reset();
          if (typeof value === "number") this.inc(value);
          else for (const [labels, count] of value) this.inc(labels, count);
        },
      });
    } else {
      new Gauge({
        ...config,
        async collect() {
          const value = await read();
          this.reset();
          if (typeof value === "number") this.set(value);
          else for (const [labels, level] of value) this.set(labels, level);
        },
      });
    }
  }
  return () => {
    for (const one of series) registry.removeSingleMetric(one.name);
  };
}
