/**
 * Atoll vs Ceph RBD on the same machine (issue 11, "peer benchmark"): a throwaway
 * Ceph from Debian's packages (tests/_ceph.ts: one mon, one mgr, N bluestore OSDs on
 * sparse files, pool size R and min_size R-1, 4 MiB objects, `rbd cache = false` as
 * QEMU's cache=none) next to an Atoll cluster of N node processes at `--replicas R`.
 * fio drives both: the `nbd` engine on an Atoll volume through the node holding its
 * write lease, the `rbd` engine (librbd, what QEMU uses) on an image of the same
 * size. Both are written in full first; every job then runs on Atoll and on Ceph
 * one after the other, the order flipping every round, each once the processes
 * of both sides are quiet (under 0.15 of a core for a second, at most
 * `--settle-seconds`: neither side's job runs on what the other's left behind),
 * and the table shows medians and the median of the per-round Atoll/Ceph
 * ratios. Besides the usual jobs: 4 KiB writes at QD1 with a flush after each,
 * the first fill of a fresh volume, random reads of a fresh clone before its
 * first write and of a second clone of the same snapshot after its first write
 * (the two read first in turn, round by round: the one read second finds the
 * snapshot's data warmed by the other), and an image upload (curl PUT of a raw image of
 * distinct blocks to the node against `rbd import` of the same file, timed
 * from start to end). Then idle CPU (utime+stime from /proc over the same
 * window) and RSS of each side.
 *
 * The machine is small and shared: compare ratios within one run, not absolutes.
 * A benchmark, never a test: it asserts nothing about time.
 *
 * With `--atoll-engine rados` (`deno task bench:rados`), Atoll is one node on the
 * RADOS engine (`atoll serve --engine rados`) in the same pool as the RBD images
 * (its own RADOS namespaces): fio through Atoll vs fio's `rbd` engine on the same
 * Ceph, what an operator who runs Ceph gains or pays for Atoll's front end.
 *
 * Run: `deno task bench:ceph [--cases n3r3,n3r2,n4r3] [--runtime S] [--rounds N]
 *   [--idle-seconds S] [--settle-seconds S] [--size-mib N] [--pgs N]
 *   [--ceph-media detected|ssd|hdd] [--atoll-engine ring|rados]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  cephBenchPackages,
  type CephCluster,
  cephTestPackages,
  ensureCephPackages,
  startCeph,
} from "../tests/_ceph.ts";
import { cpuSeconds, fio, killRunningFio, rssBytes, settle } from "./_fio.ts";
import { figure, type Idle, printTable, type Row } from "./_peer_report.ts";
import { atollSide, cephSide, radosSide, type Side } from "./_peer_sides.ts";
import { startCluster } from "../tests/_cluster.ts";
import { removeData, startNode } from "../tests/_node.ts";
import { writeImage } from "./upload_bench.ts";

/** Warm-up before fio's statistics start, in time-based jobs. */
const rampSeconds = 2;
const MiB = 1024 * 1024;

/** The cluster shapes compared: N nodes (N OSDs) at R replicas. */
const cases: Record<string, { nodes: number; replicas: number }> = {
  n1r1: { nodes: 1, replicas: 1 },
  n3r3: { nodes: 3, replicas: 3 },
  n3r2: { nodes: 3, replicas: 2 },
  n4r3: { nodes: 4, replicas: 3 },
};

/** Time-based jobs on the volume written in full. */
const jobs: { name: string; unit: Row["unit"]; latency?: Row["latency"]; args: string[] }[] = [
  { name: "seq write 1M QD8", unit: "MB/s", args: ["--rw=write", "--bs=1M", "--iodepth=8"] },
  { name: "seq read 1M QD8", unit: "MB/s", args: ["--rw=read", "--bs=1M", "--iodepth=8"] },
  { name: "rand write 4k QD32", unit: "IOPS", args: ["--rw=randwrite", "--bs=4k", "--iodepth=32"] },
  { name: "rand read 4k QD32", unit: "IOPS", args: ["--rw=randread", "--bs=4k", "--iodepth=32"] },
  {
    name: "rand write 4k QD1",
    unit: "IOPS",
    latency: "io",
    args: ["--rw=randwrite", "--bs=4k", "--iodepth=1"],
  },
  {
    name: "rand write 4k QD1, flush each",
    unit: "IOPS",
    latency: "io+flush",
    args: ["--rw=randwrite", "--bs=4k", "--iodepth=1", "--fsync=1"],
  },
];
const cloneReads = ["--rw=randread", "--bs=4k", "--iodepth=1"];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    cases: { type: "string", default: Object.keys(cases).join(",") },
    runtime: { type: "string", default: "10" },
    rounds: { type: "string", default: "2" },
    "idle-seconds": { type: "string", default: "30" },
    "settle-seconds": { type: "string", default: "30" },
    "size-mib": { type: "string", default: "1024" },
    pgs: { type: "string", default: "64" },
    "ceph-media": { type: "string", default: "detected" },
    "atoll-engine": { type: "string", default: "ring" },
  },
});
const settings = {
  runtime: Number(values.runtime),
  rounds: Number(values.rounds),
  idleSeconds: Number(values["idle-seconds"]),
  settleSeconds: Number(values["settle-seconds"]),
  sizeBytes: Number(values["size-mib"]) * MiB,
  pgs: Number(values.pgs),
  media: values["ceph-media"] as "ssd" | "hdd" | "detected",
  engine: values["atoll-engine"] as "ring" | "rados",
};
if (!["ring", "rados"].includes(settings.engine)) {
  throw new RangeError(`Cannot use --atoll-engine ${settings.engine}: ring or rados`);
}
if (!(settings.settleSeconds >= 0)) {
  throw new RangeError(`Cannot use --settle-seconds ${values["settle-seconds"]}: 0 or more`);
}
if (!["detected", "ssd", "hdd"].includes(settings.media)) {
  throw new RangeError(`Cannot use --ceph-media ${settings.media}: detected, ssd or hdd`);
}
const chosen = values.cases!.split(",");
for (const name of chosen) {
  if (!(name in cases)) {
    throw new RangeError(`Cannot run case "${name}": not one of ${Object.keys(cases)}`);
  }
}

let interrupted = false;
/** Throws once Ctrl-C was pressed, so the finally blocks stop what was started. */
function live(): void {
  if (interrupted) throw new Error("Interrupted");
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    if (interrupted) Deno.exit(130); // a second signal: give up cleaning
    interrupted = true;
    console.error(`\n${signal}: stopping what this benchmark started (again to quit at once)`);
    killRunningFio();
  });
}

/** Runs `args` on each side in `order`, each result appended to its side of `row`. */
async function pair(row: Row, order: Side[], volume: string, args: string[]) {
  const cells: string[] = [];
  for (const side of order) {
    live();
    const waited = await settled(order);
    const result = await fio(side.target(volume), [`--size=${settings.sizeBytes}`, ...args]);
    (side.name === "Atoll" ? row.atoll : row.peer).push(result);
    cells.push(`${side.name} ${figure(row, result).toFixed(1)} ${row.unit}${waited}`);
  }
  console.log(`  ${row.name.padEnd(34)} ${cells.join("   ")}`);
}

/**
 * Waits (up to `--settle-seconds`) until both sides are quiet before a job, so
 * that neither runs on the other's leftovers; says how long when it was more
 * than the one second it always measures.
 */
async function settled(sides: Side[]): Promise<string> {
  if (settings.settleSeconds <= 0) return "";
  const pids = () => sides.flatMap((side) => side.pids());
  const seconds = await settle(pids, settings.settleSeconds);
  return seconds < 2 ? "" : ` (after ${seconds.toFixed(0)} s to settle)`;
}

/** The 1, 5 and 15 minute load averages: how busy the shared machine was. */
async function loadAverage(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
}

async function measureIdle(atoll: Side, ceph: Side): Promise<Idle> {
  const before = [await cpuSeconds(atoll.pids()), await cpuSeconds(ceph.pids())];
  await new Promise((resolve) => setTimeout(resolve, settings.idleSeconds * 1000));
  const after = [await cpuSeconds(atoll.pids()), await cpuSeconds(ceph.pids())];
  return {
    seconds: settings.idleSeconds,
    atollCores: (after[0] - before[0]) / settings.idleSeconds,
    peerCores: (after[1] - before[1]) / settings.idleSeconds,
    atollRssBytes: await rssBytes(atoll.pids()),
    peerRssBytes: await rssBytes(ceph.pids()),
  };
}

async function rounds(atoll: Side, ceph: Side): Promise<Row[]> {
  const rows: Row[] = jobs.map((job) => ({ ...job, atoll: [], peer: [] }));
  const fill: Row = {
    name: `first fill ${settings.sizeBytes / MiB} MiB, 1M QD8`,
    unit: "MB/s",
    atoll: [],
    peer: [],
  };
  const before: Row = {
    name: "fresh clone rand read 4k QD1",
    unit: "IOPS",
    latency: "io",
    atoll: [],
    peer: [],
  };
  const after: Row = {
    name: "clone after its first 4k write",
    unit: "IOPS",
    latency: "io",
    atoll: [],
    peer: [],
  };
  const upload: Row = {
    name: `image upload ${settings.sizeBytes / MiB} MiB`,
    unit: "MB/s",
    atoll: [],
    peer: [],
  };
  const image = await Deno.makeTempFile({ prefix: "atoll-peer-image-" });
  try {
    const timed = ["--time_based", `--runtime=${settings.runtime}`, `--ramp_time=${rampSeconds}`];
    const base: Row = {
      name: "(fill of the volume under test)",
      unit: "MB/s",
      atoll: [],
      peer: [],
    };
    for (const side of [atoll, ceph]) await side.create("v", settings.sizeBytes);
    await pair(base, [atoll, ceph], "v", ["--rw=write", "--bs=1M", "--iodepth=8"]);
    for (let round = 0; round < settings.rounds; round++) {
      console.log(`round ${round + 1} of ${settings.rounds} (load ${await loadAverage()})`);
      const order = round % 2 === 0 ? [atoll, ceph] : [ceph, atoll];
      for (const [i, job] of jobs.entries()) {
        await pair(rows[i], order, "v", [...job.args, ...timed]);
      }
      for (const side of order) await side.create(`fill${round}`, settings.sizeBytes);
      await pair(fill, order, `fill${round}`, ["--rw=write", "--bs=1M", "--iodepth=8"]);
      // Two clones of one snapshot: one read before any write, one after its first write.
      // Whichever is read second finds the snapshot's data warmed by the other (the page
      // cache, the read-ahead of the objects read), so the two go first in turn.
      const [fresh, written] = [`clone${round}`, `written${round}`];
      for (const side of order) await side.clone(`fill${round}`, [fresh, written]);
      const readFresh = () => pair(before, order, fresh, [...cloneReads, ...timed]);
      const readWritten = async () => {
        for (const side of order) {
          await fio(side.target(written), ["--rw=write", "--bs=4k", "--size=4k"]);
        }
        await pair(after, order, written, [...cloneReads, ...timed]);
      };
      if (round % 2 === 0) {
        await readFresh();
        await readWritten();
      } else {
        await readWritten();
        await readFresh();
      }
      // Other blocks every round: Atoll would deduplicate a second upload of the same bytes.
      await writeImage(image, settings.sizeBytes / MiB, round);
      const cells: string[] = [];
      for (const side of order) {
        live();
        const waited = await settled(order);
        const seconds = await side.upload(`image${round}-${side.name}`, image);
        const result = {
          megabytesPerSecond: settings.sizeBytes / seconds / 1e6,
          iops: 0,
          p50Us: 0,
          flushP50Us: 0,
        };
        (side.name === "Atoll" ? upload.atoll : upload.peer).push(result);
        cells.push(`${side.name} ${result.megabytesPerSecond.toFixed(1)} MB/s${waited}`);
      }
      console.log(`  ${upload.name.padEnd(34)} ${cells.join("   ")}`);
    }
  } finally {
    await Deno.remove(image);
  }
  return [...rows, fill, before, after, upload];
}

async function runCase(name: string): Promise<void> {
  const { nodes, replicas } = cases[name];
  const atollShape = settings.engine === "rados"
    ? "Atoll: 1 node on the RADOS engine in the same pool"
    : `R=${replicas} on ${nodes} nodes`;
  const title = `${atollShape} (Ceph: ${nodes} OSDs, size ${replicas}, ` +
    `min_size ${Math.max(1, replicas - 1)}): ${settings.sizeBytes / MiB} MiB, ` +
    `${settings.rounds} round(s) of ${settings.runtime} s + ${rampSeconds} s ramp, medians`;
  console.log(`\n== ${title}`);
  const ceph = await startCeph({
    osds: nodes,
    replicas,
    pgs: settings.pgs,
    media: settings.media,
    // On RADOS the benchmark makes its pool itself (no mgr: fewer daemons on the shared cores).
    mgr: settings.engine === "ring",
  });
  try {
    live();
    if (settings.engine === "rados") {
      await ceph.createPool("rbd", settings.pgs);
      await ceph.rbd(["pool", "init", "rbd"]);
      return await runOnRados(ceph, title);
    }
    const cluster = await startCluster(nodes, () => ["--replicas", String(replicas)]);
    try {
      live();
      const atoll = atollSide(cluster), peer = cephSide(ceph);
      const rows = await rounds(atoll, peer);
      live();
      const idle = await measureIdle(atoll, peer);
      printTable(title, "Ceph", rows, idle);
      console.log(`(load at the end of the idle window: ${await loadAverage()})`);
    } finally {
      await cluster.stop();
    }
  } finally {
    await ceph.stop();
  }
}

/** The case with Atoll as one node on the RADOS engine of `ceph`. */
async function runOnRados(ceph: CephCluster, title: string): Promise<void> {
  const node = await startNode({
    args: ["--engine", "rados", "--ceph-conf", `${ceph.dir}/ceph.conf`, "--pool", "rbd"],
  });
  try {
    live();
    const atoll = radosSide(node), peer = cephSide(ceph);
    const rows = await rounds(atoll, peer);
    live();
    const idle = await measureIdle(atoll, peer);
    printTable(title, "Ceph", rows, idle);
    console.log(`(load at the end of the idle window: ${await loadAverage()})`);
  } finally {
    await node.stop();
    await removeData(node);
  }
}

async function header(): Promise<void> {
  const output = async (command: string, args: string[]) =>
    new TextDecoder().decode((await new Deno.Command(command, { args }).output()).stdout);
  const text = async (command: string, args: string[]) => (await output(command, args)).trim();
  const root = new URL("../", import.meta.url).pathname;
  const commit = await text("git", ["-C", root, "rev-parse", "HEAD"]);
  const changed = (await output("git", ["-C", root, "status", "--porcelain"])).split("\n")
    .filter((line) => line !== "").map((line) => line.slice(3));
  console.log(`command: deno run -A bench/ceph_peer_bench.ts ${Deno.args.join(" ")}`.trim());
  const dirty = changed.length > 0 ? ` (working tree differs in: ${changed.join(", ")})` : "";
  console.log(`commit: ${commit}${dirty}`);
  console.log(
    `machine: ${navigator.hardwareConcurrency} cores, load ${await loadAverage()}; ` +
      `deno ${Deno.version.deno}, ${await text("fio", ["--version"])}, ${await text("ceph", [
        "--version",
      ])}`,
  );
  console.log(`Ceph bluestore settings: ${settings.media}; rbd pool with ${settings.pgs} PGs`);
}

await ensureCephPackages(
  settings.engine === "rados" ? [...cephTestPackages, "librbd1", "fio"] : cephBenchPackages,
);
await header();
try {
  for (const name of chosen) await runCase(name);
} catch (error) {
  if (!interrupted) throw error;
  console.error("interrupted: everything started was stopped and removed");
  Deno.exit(130);
}
