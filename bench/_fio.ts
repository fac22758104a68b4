/**
 * fio runs against an NBD export (the `nbd` engine, libnbd) or an RBD image (the
 * `rbd` engine, librbd), the figures the peer benchmarks compare, and what a set of
 * processes costs according to /proc. Every fio this module starts can be ended
 * with {@linkcode killRunningFio} (a Ctrl-C while a job runs).
 *
 * @module
 */

/** Where fio sends its I/O. */
export type FioTarget =
  | { kind: "nbd"; uri: string }
  | { kind: "rbd"; pool: string; image: string; env: Record<string, string> };

/** The figures of one fio job (reads and writes summed; latencies in µs). */
export interface FioResult {
  megabytesPerSecond: number;
  iops: number;
  /** Median completion latency of reads or writes, whichever the job did. */
  p50Us: number;
  /** Median latency of the flushes (`fsync=N`), 0 without them. */
  flushP50Us: number;
}

const running = new Set<Deno.ChildProcess>();

/** SIGKILLs every fio still running (they were started by this process). */
export function killRunningFio(): void {
  for (const child of running) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
}

function engineArgs(target: FioTarget): string[] {
  if (target.kind === "nbd") return ["--ioengine=nbd", `--uri=${target.uri}`];
  return [
    "--ioengine=rbd",
    "--clientname=admin",
    `--pool=${target.pool}`,
    `--rbdname=${target.image}`,
  ];
}

function p50(stats: { percentile?: Record<string, number> } | undefined): number {
  return (stats?.percentile?.["50.000000"] ?? 0) / 1000;
}

/** Runs one fio job on `target` with `args` (rw, bs, iodepth, ...); throws if fio fails. */
export async function fio(target: FioTarget, args: string[]): Promise<FioResult> {
  const output = await Deno.makeTempFile({ prefix: "atoll-fio-", suffix: ".json" });
  try {
    const child = new Deno.Command("fio", {
      args: [
        "--name=peer",
        ...engineArgs(target),
        "--output-format=json",
        `--output=${output}`,
        ...args,
      ],
      env: target.kind === "rbd" ? target.env : {},
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    running.add(child);
    const out = await child.output();
    running.delete(child);
    const text = new TextDecoder();
    if (out.code !== 0) {
      throw new Error(
        `Cannot run fio ${args.join(" ")} on ${JSON.stringify(target)}: exit ${out.code}\n` +
          text.decode(out.stderr) + text.decode(out.stdout),
      );
    }
    const job = JSON.parse(await Deno.readTextFile(output)).jobs[0];
    const side = job.write.total_ios > 0 ? job.write : job.read;
    return {
      megabytesPerSecond: (job.read.bw_bytes + job.write.bw_bytes) / 1e6,
      iops: job.read.iops + job.write.iops,
      p50Us: p50(side.clat_ns),
      flushP50Us: p50(job.sync?.lat_ns),
    };
  } finally {
    await Deno.remove(output).catch(() => {});
  }
}

let ticksPerSecond: number | null = null;

async function clockTicks(): Promise<number> {
  if (ticksPerSecond === null) {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"] }).output();
    ticksPerSecond = Number(new TextDecoder().decode(out.stdout).trim()) || 100;
  }
  return ticksPerSecond;
}

/** CPU seconds (user + system, all threads) the processes `pids` used so far. */
export async function cpuSeconds(pids: number[]): Promise<number> {
  const ticks = await clockTicks();
  let total = 0;
  for (const pid of pids) total += statCpuTicks(await Deno.readTextFile(`/proc/${pid}/stat`));
  return total / ticks;
}

/** utime + stime, in clock ticks, of a `/proc/.../stat` line (a process's or a thread's). */
function statCpuTicks(stat: string): number {
  // The command name (field 2) may hold spaces: fields after its ")" start at
  // field 3, so utime and stime (fields 14 and 15) are at indexes 11 and 12.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * CPU seconds (user + system) process `pid` used so far, split between its
 * main thread (the event loop, whose thread id is the pid) and all its other
 * threads (V8's collector and compiler, workers, Deno's blocking pool).
 */
export async function threadCpuSeconds(pid: number): Promise<{ main: number; others: number }> {
  const ticks = await clockTicks();
  let main = 0;
  let others = 0;
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/stat`);
    } catch {
      continue; // the thread ended meanwhile
    }
    const seconds = statCpuTicks(stat) / ticks;
    if (task.name === String(pid)) main += seconds;
    else others += seconds;
  }
  return { main, others };
}

/** Resident memory (VmRSS) of the processes `pids`, summed, in bytes. */
export async function rssBytes(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    total += Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? 0) * 1024;
  }
  return total;
}

/**
 * Waits until the processes `pids()` together used under `quietCores` of a
 * core over a second (an idle Atoll cluster and an idle Ceph together take
 * about half of that), at most `maxSeconds`; returns the seconds waited (at
 * least the one second it measures). A job then starts on a quiet machine
 * rather than on what the job before it left running (syncs, compactions,
 * healing).
 */
export async function settle(pids: () => number[], maxSeconds: number, quietCores = 0.15) {
  const started = performance.now();
  let before = await cpuSeconds(pids());
  while ((performance.now() - started) / 1000 < maxSeconds) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const now = await cpuSeconds(pids());
    if (now - before < quietCores) break;
    before = now;
  }
  return (performance.now() - started) / 1000;
}
