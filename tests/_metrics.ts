/**
 * Test helpers for /metrics: a scrape parsed into values by series, lookups by
 * name and labels, and `promtool check metrics` (Debian package `prometheus`).
 */
import assert from "node:assert/strict";
import type { TestNode } from "./_node.ts";

/** One scrape: its text, and its values by series (`name{a="x",b="y"}`, labels sorted). */
export interface Scrape {
  text: string;
  values: Map<string, number>;
  /** The value of series `name` with exactly `labels`; fails when absent. */
  value(name: string, labels?: Record<string, string>): number;
  /** Series of `name` whose labels include `labels`. */
  matching(name: string, labels?: Record<string, string>): number[];
  /** Every series name (histograms' `_bucket`, `_sum`, `_count` included). */
  names(): Set<string>;
}

/** `name{labels}` with labels sorted by name: the key of {@linkcode Scrape.values}. */
function seriesKey(name: string, labels: Record<string, string>): string {
  const pairs = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return `${name}{${pairs.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(",")}}`;
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const match of text.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
    labels[match[1]] = match[2];
  }
  return labels;
}

/** Parses the Prometheus text format (what prom-client writes). */
export function parseScrape(text: string): Scrape {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    assert.ok(match !== null, `unparsable metrics line: ${line}`);
    values.set(seriesKey(match[1], parseLabels(match[2] ?? "")), Number(match[3]));
  }
  return {
    text,
    values,
    value(name, labels = {}) {
      const value = values.get(seriesKey(name, labels));
      assert.ok(value !== undefined, `no series ${seriesKey(name, labels)} in /metrics`);
      return value;
    },
    matching(name, labels = {}) {
      const found: number[] = [];
      for (const [key, value] of values) {
        if (!key.startsWith(`${name}{`)) continue;
        const have = parseLabels(key.slice(name.length));
        if (Object.entries(labels).every(([k, v]) => have[k] === v)) found.push(value);
      }
      return found;
    },
    names() {
      return new Set([...values.keys()].map((key) => key.slice(0, key.indexOf("{"))));
    },
  };
}

/** GETs /metrics of `node` and parses it. */
export async function scrape(node: TestNode): Promise<Scrape> {
  const response = await node.fetch("/metrics");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parseScrape(await response.text());
}

/** Runs `promtool check metrics` on `text`; fails the test with promtool's complaints. */
export async function promtoolCheckMetrics(text: string): Promise<void> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `promtool check metrics failed:\n${said}`);
  assert.equal(said.trim(), "", `promtool check metrics complained:\n${said}`);
}
