/**
 * Rows of the peer benchmark (one job measured on Atoll and on the peer, once per
 * round) and the table printed per case: medians of each side, the median of the
 * per-round Atoll/peer ratios (the two sides of a round ran back to back, so a
 * round's ratio is steadier than its absolutes on a shared machine).
 *
 * @module
 */
import type { FioResult } from "./_fio.ts";

/** What a row compares: throughput, operations, or either with its p50 latency. */
export interface Row {
  name: string;
  unit: "MB/s" | "IOPS";
  /** Latency shown beside the figure: of the I/O, or of the I/O plus its flush. */
  latency?: "io" | "io+flush";
  atoll: FioResult[];
  peer: FioResult[];
}

/** Idle cost of each side, measured over the same window. */
export interface Idle {
  seconds: number;
  atollCores: number;
  peerCores: number;
  atollRssBytes: number;
  peerRssBytes: number;
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The figure a row compares, from one fio result. */
export function figure(row: Row, result: FioResult): number {
  return row.unit === "MB/s" ? result.megabytesPerSecond : result.iops;
}

/** The latency a row shows, in µs (0 when it shows none). */
function latencyUs(row: Row, result: FioResult): number {
  if (row.latency === undefined) return 0;
  return result.p50Us + (row.latency === "io+flush" ? result.flushP50Us : 0);
}

function format(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function ms(us: number): string {
  return `${(us / 1000).toFixed(2)} ms`;
}

/** The row's medians and ratio, as numbers (also what the table prints). */
export function summarize(row: Row) {
  const atoll = median(row.atoll.map((result) => figure(row, result)));
  const peer = median(row.peer.map((result) => figure(row, result)));
  const rounds = Math.min(row.atoll.length, row.peer.length);
  const ratios = Array.from(
    { length: rounds },
    (_, i) => figure(row, row.atoll[i]) / figure(row, row.peer[i]),
  );
  return {
    atoll,
    peer,
    ratio: median(ratios),
    atollLatencyUs: median(row.atoll.map((result) => latencyUs(row, result))),
    peerLatencyUs: median(row.peer.map((result) => latencyUs(row, result))),
  };
}

/** Prints one case: a line per row, the clone before/after ratios, idle CPU and RSS. */
export function printTable(title: string, peerName: string, rows: Row[], idle: Idle): void {
  const line = (cells: string[]) =>
    console.log(
      cells[0].padEnd(34) + cells.slice(1, 5).map((cell) => cell.padStart(11)).join("") +
        (cells[5] ? `   ${cells[5]}` : ""),
    );
  console.log(`\n${title}`);
  line(["job", "unit", "Atoll", peerName, `Atoll/${peerName}`, "p50 Atoll / " + peerName]);
  for (const row of rows) {
    const s = summarize(row);
    const latency = row.latency === undefined
      ? ""
      : `${ms(s.atollLatencyUs)} / ${ms(s.peerLatencyUs)}` +
        (row.latency === "io+flush" ? " (write + flush)" : "");
    line([row.name, row.unit, format(s.atoll), format(s.peer), s.ratio.toFixed(2), latency]);
  }
  const before = rows.find((row) => row.name.startsWith("fresh clone"));
  const after = rows.find((row) => row.name.startsWith("clone after"));
  if (before !== undefined && after !== undefined) {
    // Per round, then the median: which of the two read first alternates by round.
    const ratio = (side: "atoll" | "peer") =>
      median(
        after[side].map((result, i) => figure(before, before[side][i]) / figure(after, result)),
      )
        .toFixed(2);
    line(["clone reads, before / after write", "ratio", ratio("atoll"), ratio("peer"), ""]);
  }
  const mib = (bytes: number) => (bytes / 1024 ** 2).toFixed(0);
  line([
    `idle CPU over ${idle.seconds} s (lower is better)`,
    "cores",
    idle.atollCores.toFixed(3),
    idle.peerCores.toFixed(3),
    (idle.atollCores / idle.peerCores).toFixed(2),
  ]);
  line([
    "RSS, all processes (lower is better)",
    "MiB",
    mib(idle.atollRssBytes),
    mib(idle.peerRssBytes),
    (idle.atollRssBytes / idle.peerRssBytes).toFixed(2),
  ]);
}
