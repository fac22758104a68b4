/**
 * NBD performance of an Atoll volume as a ratio to `nbdkit file` on a plain file of
 * the same size, both driven by the same fio jobs (nbd engine) in the same run. The
 * machine is noisy (2 shared cores): atoll and nbdkit runs of each job alternate
 * within every round, the order flips every round, and the table shows medians and
 * the median of the per-round ratios. Targets (issue 3): every ratio >= 0.5, aim 1.0.
 *
 * Both targets are written in full first, so reads measure data (not holes) and
 * writes measure in-place overwrites. Two extra lines, on fresh targets over the unix
 * socket, measure first-touch cost: random 4 KiB writes into a fresh thin volume vs a
 * fresh sparse file, and one 4 KiB write into each 4 MiB block (Atoll's copy-on-write
 * allocation isolated). CPU time of each server (/proc/PID/stat utime+stime) and of
 * fio (our reaped children's cutime+cstime) is taken around every run: on a shared
 * box it is steadier than throughput.
 *
 * Run: `deno run -A bench/nbd_bench.ts [--size-mib N] [--runtime S] [--rounds N] [--quick]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { run } from "../tests/_files.ts";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";

const MiB = 1024 * 1024;
/** Atoll's block (one object per 4 MiB of a volume). */
const blockBytes = 4 * MiB;
/** Warm-up before fio's statistics start, in time-based jobs. */
const rampSeconds = 2;
/** Time nbdkit has to start listening. */
const serverStartTimeoutMs = 10_000;
/** Blocks the first-touch line writes once each (64 GiB thin; 16 GiB in --quick). */
const firstTouchBlocksDefault = 16_384;
const firstTouchBlocksQuick = 4_096;
/** The issue 3 target for every ratio. */
const ratioTarget = 0.5;

type Transport = "unix" | "tcp";

/** One fio workload. `unit` says which figure the table compares. */
interface Job {
  name: string;
  rw: "read" | "write" | "randread" | "randwrite";
  blockSize: string;
  iodepth: number;
  unit: "MiB/s" | "IOPS";
}

const jobs: Job[] = [
  { name: "seq read 1M QD8", rw: "read", blockSize: "1m", iodepth: 8, unit: "MiB/s" },
  { name: "seq write 1M QD8", rw: "write", blockSize: "1m", iodepth: 8, unit: "MiB/s" },
  { name: "rand read 4K QD32", rw: "randread", blockSize: "4k", iodepth: 32, unit: "IOPS" },
  { name: "rand write 4K QD32", rw: "randwrite", blockSize: "4k", iodepth: 32, unit: "IOPS" },
];

/** A server fio talks to: its NBD URI and the pid whose CPU time we read. */
interface Target {
  uri: string;
  pid: number;
}

/** One fio run: its figures and the CPU seconds spent by the server and by fio. */
interface Sample {
  value: number;
  serverUserPerIoUs: number;
  serverSystemPerIoUs: number;
  serverCpuPerIoUs: number;
  fioCpuPerIoUs: number;
  serverBusyCores: number;
}

/** Settings of one benchmark run. */
export interface NbdBenchOptions {
  sizeMib: number;
  runtimeSeconds: number;
  rounds: number;
  firstTouchBlocks: number;
}

let clockTicksPerSecond = 100;

/** User and system CPU seconds of a process (`children`: of its reaped children). */
function cpuSeconds(pid: number | "self", children: boolean): { user: number; system: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name (field 2) may hold spaces: count fields after its ")". Field 3
  // is fields[0]: utime and stime are fields 14 and 15, cutime and cstime 16 and 17.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const first = children ? 13 : 11;
  return {
    user: Number(fields[first]) / clockTicksPerSecond,
    system: Number(fields[first + 1]) / clockTicksPerSecond,
  };
}

/** Runs fio against `target` and returns its figure for `unit` plus CPU costs. */
async function runFio(
  target: Target,
  job: { name: string; rw: string; blockSize: string; iodepth: number; unit: string },
  fioArgs: string[],
): Promise<Sample> {
  const output = await Deno.makeTempFile({ prefix: "nbd-bench-fio-", suffix: ".json" });
  const serverBefore = cpuSeconds(target.pid, false);
  const fioBefore = cpuSeconds("self", true);
  const startMs = performance.now();
  try {
    await run("fio", [
      `--name=${job.name.replaceAll(" ", "-")}`,
      "--ioengine=nbd",
      `--uri=${target.uri}`,
      `--rw=${job.rw}`,
      `--bs=${job.blockSize}`,
      `--iodepth=${job.iodepth}`,
      "--output-format=json",
      `--output=${output}`,
      ...fioArgs,
    ]);
    const wallSeconds = (performance.now() - startMs) / 1000;
    const serverAfter = cpuSeconds(target.pid, false);
    const fioAfter = cpuSeconds("self", true);
    const serverUser = serverAfter.user - serverBefore.user;
    const serverSystem = serverAfter.system - serverBefore.system;
    const fioCpu = fioAfter.user + fioAfter.system - fioBefore.user - fioBefore.system;
    // fio prints a line of its own on stdout, so the JSON goes to a file.
    const report = JSON.parse(await Deno.readTextFile(output));
    const stats = report.jobs[0][job.rw.includes("read") ? "read" : "write"];
    // CPU time also covers the ramp, which fio's totals leave out: count its I/Os at
    // the measured rate.
    const ramped = fioArgs.includes("--time_based") ? rampSeconds : 0;
    const ios = stats.total_ios + stats.iops * ramped;
    return {
      value: job.unit === "IOPS" ? stats.iops : stats.bw_bytes / MiB,
      serverUserPerIoUs: (serverUser / ios) * 1e6,
      serverSystemPerIoUs: (serverSystem / ios) * 1e6,
      serverCpuPerIoUs: ((serverUser + serverSystem) / ios) * 1e6,
      fioCpuPerIoUs: (fioCpu / ios) * 1e6,
      serverBusyCores: (serverUser + serverSystem) / wallSeconds,
    };
  } finally {
    await Deno.remove(output).catch(() => {});
  }
}

/** fio flags of a time-based measurement over the first `sizeMib` MiB. */
function timedArgs(sizeMib: number, runtimeSeconds: number, ramp: boolean): string[] {
  return [
    `--size=${sizeMib}m`,
    "--time_based",
    `--runtime=${runtimeSeconds}`,
    ...(ramp ? [`--ramp_time=${rampSeconds}`] : []),
  ];
}

/** A running `nbdkit file` on `path`, listening on loopback only. */
async function startNbdkit(path: string, transport: Transport, socketPath: string) {
  let listenArgs: string[], uri: string;
  if (transport === "unix") {
    listenArgs = ["-U", socketPath];
    uri = `nbd+unix:///?socket=${socketPath}`;
  } else {
    const port = freeLoopbackPort();
    listenArgs = ["-i", "127.0.0.1", "-p", String(port)];
    uri = `nbd://127.0.0.1:${port}/`;
  }
  // nbdkit writes its pid file once it listens: a connect probe would make it log
  // a broken handshake. Foreground (-f) so that the pid we kill is the server's;
  // default --threads.
  const pidFile = `${path}.pid`;
  await Deno.remove(pidFile).catch(() => {});
  const process = new Deno.Command("nbdkit", {
    args: ["-f", "-P", pidFile, ...listenArgs, "file", `file=${path}`],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const deadline = performance.now() + serverStartTimeoutMs;
  while (!(await Deno.stat(pidFile).then(() => true, () => false))) {
    if (performance.now() > deadline) {
      process.kill("SIGKILL");
      throw new Error(
        `Cannot start nbdkit on ${path}: not listening after ${serverStartTimeoutMs} ms`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const stop = async () => {
    try {
      process.kill("SIGTERM");
    } catch { /* already gone */ }
    await process.status;
  };
  return { target: { uri, pid: process.pid } as Target, stop };
}

function freeLoopbackPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function createVolume(node: TestNode, name: string, sizeBytes: number): Promise<void> {
  const response = await node.fetch("/v1/volumes", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, size: sizeBytes }),
  });
  const text = await response.text();
  if (response.status !== 201) throw new Error(`Cannot create volume "${name}": ${text}`);
}

async function deleteVolume(node: TestNode, name: string): Promise<void> {
  await (await node.fetch(`/v1/volumes/${name}`, { method: "DELETE" })).body?.cancel();
}

async function sparseFile(path: string, sizeBytes: number): Promise<void> {
  await Deno.remove(path).catch(() => {});
  await Deno.writeFile(path, new Uint8Array(0));
  await Deno.truncate(path, sizeBytes);
}

/** Mean of the middle values: the median of an even count is not one of its samples. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  return sorted.length % 2 === 1
    ? sorted[Math.floor(middle)]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Paired samples of one line of the table. */
interface Row {
  job: string;
  transport: string;
  unit: string;
  atoll: Sample[];
  nbdkit: Sample[];
  /** False for the information lines (preallocation, fresh targets): no target applies. */
  targeted: boolean;
  error?: string;
}

/** Runs `measure` on both targets, atoll first in even rounds and nbdkit first in odd. */
async function pair(
  row: Row,
  round: number,
  measure: (who: "atoll" | "nbdkit") => Promise<Sample>,
) {
  if (row.error !== undefined) return;
  const order: ("atoll" | "nbdkit")[] = round % 2 === 0 ? ["atoll", "nbdkit"] : ["nbdkit", "atoll"];
  try {
    for (const who of order) row[who].push(await measure(who));
  } catch (error) {
    // A failed run spoils its row, not the benchmark.
    row.error = String(error instanceof Error ? error.message : error).split("\n")[0];
  }
}

function ratios(row: Row, pick: (sample: Sample) => number): number[] {
  const count = Math.min(row.atoll.length, row.nbdkit.length);
  return Array.from({ length: count }, (_, i) => pick(row.atoll[i]) / pick(row.nbdkit[i]));
}

function printTables(rows: Row[]): void {
  const fixed = (value: number, digits: number, width: number) =>
    (Number.isFinite(value) ? value.toFixed(digits) : "-").padStart(width);
  const figure = (value: number) => fixed(value, 0, 9);
  console.log(
    `${"job".padEnd(44)} ${"via".padEnd(5)} ${"unit".padEnd(6)} ${"atoll".padStart(9)}` +
      ` ${"nbdkit".padStart(9)}  ratio  per round     target`,
  );
  for (const row of rows) {
    const head = `${row.job.padEnd(44)} ${row.transport.padEnd(5)} ${row.unit.padEnd(6)}`;
    if (row.error !== undefined) {
      console.log(`${head} failed: ${row.error}`);
      continue;
    }
    const perRound = ratios(row, (s) => s.value);
    const ratio = median(perRound);
    const verdict = !row.targeted
      ? "info"
      : ratio >= ratioTarget
      ? "ok (>= 0.5, aim 1.0)"
      : "BELOW 0.5";
    console.log(
      `${head} ${figure(median(row.atoll.map((s) => s.value)))} ${
        figure(median(row.nbdkit.map((s) => s.value)))
      } ${fixed(ratio, 2, 6)}  ${
        perRound.map((r) => r.toFixed(2)).join(" ").padEnd(12)
      }  ${verdict}`,
    );
  }
  console.log(
    `\nCPU µs per I/O (a 1M I/O is 1 MiB), medians: server user+system, total ratio;` +
      ` busy = server CPU s per wall s; fio's own CPU.`,
  );
  console.log(
    `${"job".padEnd(44)} ${"via".padEnd(5)} ${"atoll usr+sys".padStart(15)}` +
      ` ${"nbdkit usr+sys".padStart(15)}  ratio  busy a|n   fio a|n`,
  );
  for (const row of rows) {
    if (row.error !== undefined || row.atoll.length === 0) continue;
    const med = (samples: Sample[], pick: (s: Sample) => number) => median(samples.map(pick));
    const split = (samples: Sample[]) =>
      `${fixed(med(samples, (s) => s.serverUserPerIoUs), 1, 7)}+${
        fixed(med(samples, (s) => s.serverSystemPerIoUs), 1, 7).trim().padEnd(7)
      }`;
    const both = (pick: (s: Sample) => number, digits: number) =>
      `${fixed(med(row.atoll, pick), digits, 4)}|${fixed(med(row.nbdkit, pick), digits, 4).trim()}`;
    console.log(
      `${row.job.padEnd(44)} ${row.transport.padEnd(5)} ${split(row.atoll)} ${split(row.nbdkit)} ${
        fixed(median(ratios(row, (s) => s.serverCpuPerIoUs)), 2, 6)
      }  ${both((s) => s.serverBusyCores, 2).padEnd(9)}  ${both((s) => s.fioCpuPerIoUs, 0)}`,
    );
  }
}

/** Runs the benchmark and prints its tables; returns the rows for callers. */
export async function nbdBench(options: NbdBenchOptions): Promise<Row[]> {
  clockTicksPerSecond = Number((await run("getconf", ["CLK_TCK"])).trim());
  const sizeBytes = options.sizeMib * MiB;
  const dir = await Deno.makeTempDir({ prefix: "atoll-nbd-bench-" });
  const stops: (() => Promise<void>)[] = [];
  const servers: Record<Transport, { atoll: Target; nbdkit: Target; node: TestNode }> = {} as never;
  const rows: Row[] = [];
  try {
    // One node and one nbdkit per transport: a node listens on one NBD address.
    for (const transport of ["unix", "tcp"] as const) {
      const node = await startNode(transport === "unix" ? { nbd: `unix:${dir}/atoll.sock` } : {});
      stops.push(async () => {
        await node.stop();
        await removeData(node);
      });
      await createVolume(node, "bench", sizeBytes);
      const file = `${dir}/nbdkit-${transport}.img`;
      await sparseFile(file, sizeBytes);
      const nbdkit = await startNbdkit(file, transport, `${dir}/nbdkit.sock`);
      stops.push(nbdkit.stop);
      servers[transport] = {
        atoll: { uri: node.nbdUri("bench"), pid: node.process.pid },
        nbdkit: nbdkit.target,
        node,
      };
    }
    // Preallocation: the first full write, reported for information only.
    const fill = { name: "fill", rw: "write", blockSize: "1m", iodepth: 8, unit: "MiB/s" };
    for (const transport of ["unix", "tcp"] as const) {
      const row: Row = {
        job: "preallocate: first full write 1M QD8 (info)",
        transport,
        unit: "MiB/s",
        atoll: [],
        nbdkit: [],
        targeted: false,
      };
      await pair(
        row,
        0,
        (who) => runFio(servers[transport][who], fill, [`--size=${options.sizeMib}m`]),
      );
      rows.push(row);
    }
    const measured: Row[] = [];
    for (const transport of ["unix", "tcp"] as const) {
      for (const job of jobs) {
        measured.push({
          job: job.name,
          transport,
          unit: job.unit,
          atoll: [],
          nbdkit: [],
          targeted: true,
        });
      }
    }
    const fresh: Row = {
      job: "FRESH rand write 4K QD32 (thin vol / sparse)",
      transport: "unix",
      unit: "IOPS",
      atoll: [],
      nbdkit: [],
      targeted: false,
    };
    const touch: Row = {
      job: `FIRST TOUCH 4K write per 4M block, ${options.firstTouchBlocks} blk`,
      transport: "unix",
      unit: "IOPS",
      atoll: [],
      nbdkit: [],
      targeted: false,
    };
    for (let round = 0; round < options.rounds; round++) {
      for (const row of measured) {
        const job = jobs.find((j) => j.name === row.job)!;
        const targets = servers[row.transport as Transport];
        const args = timedArgs(options.sizeMib, options.runtimeSeconds, true);
        await pair(row, round, (who) => runFio(targets[who], job, args));
      }
      await freshPair(fresh, round, dir, servers.unix.node, {
        sizeBytes,
        job: { ...jobs[3], name: "fresh" },
        fioArgs: timedArgs(options.sizeMib, options.runtimeSeconds, false),
      });
      await freshPair(touch, round, dir, servers.unix.node, {
        sizeBytes: options.firstTouchBlocks * blockBytes,
        job: {
          name: "touch",
          rw: `write:${blockBytes / 1024 - 4}k`,
          blockSize: "4k",
          iodepth: 32,
          unit: "IOPS",
        },
        fioArgs: [`--io_size=${options.firstTouchBlocks * 4}k`],
      });
    }
    rows.push(...measured, fresh, touch);
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  printTables(rows);
  return rows;
}

/** One round of a fresh-target line: a new thin volume and a new sparse file each time. */
async function freshPair(
  row: Row,
  round: number,
  dir: string,
  node: TestNode,
  spec: {
    sizeBytes: number;
    job: { name: string; rw: string; blockSize: string; iodepth: number; unit: string };
    fioArgs: string[];
  },
): Promise<void> {
  const name = `fresh-${spec.job.name}-${round}`;
  const file = `${dir}/${name}.img`;
  await createVolume(node, name, spec.sizeBytes);
  await sparseFile(file, spec.sizeBytes);
  const nbdkit = await startNbdkit(file, "unix", `${dir}/${name}.sock`);
  try {
    const targets = {
      atoll: { uri: node.nbdUri(name), pid: node.process.pid },
      nbdkit: nbdkit.target,
    };
    await pair(row, round, (who) => runFio(targets[who], spec.job, spec.fioArgs));
  } finally {
    await nbdkit.stop();
    await deleteVolume(node, name);
    await Deno.remove(file).catch(() => {});
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "size-mib": { type: "string" },
      runtime: { type: "string" },
      rounds: { type: "string" },
      quick: { type: "boolean", default: false },
    },
  });
  const quick = values.quick;
  const options: NbdBenchOptions = {
    sizeMib: Number(values["size-mib"] ?? (quick ? 256 : 1024)),
    runtimeSeconds: Number(values.runtime ?? (quick ? 5 : 10)),
    rounds: Number(values.rounds ?? (quick ? 1 : 2)),
    firstTouchBlocks: quick ? firstTouchBlocksQuick : firstTouchBlocksDefault,
  };
  for (const [flag, value] of Object.entries(options)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(
        `Cannot run nbd_bench: ${flag} must be a positive integer, got ${value}`,
      );
    }
  }
  console.log(
    `reproduce: deno run -A bench/nbd_bench.ts --size-mib ${options.sizeMib} --runtime ${options.runtimeSeconds} --rounds ${options.rounds}${
      quick ? " --quick" : ""
    }`,
  );
  // Other engineers edit the tree while benchmarks run: name the code measured.
  const tree = await run("git", [
    "-C",
    new URL("..", import.meta.url).pathname,
    "describe",
    "--always",
    "--dirty",
  ])
    .then((text) => text.trim(), () => "unknown");
  console.log(
    `atoll at ${tree}; fio nbd engine, Atoll volume vs nbdkit file (${options.sizeMib} MiB, both written in full first),` +
      ` ${options.runtimeSeconds} s + ${rampSeconds} s ramp per run, ${options.rounds} interleaved round(s), medians`,
  );
  await nbdBench(options);
}
