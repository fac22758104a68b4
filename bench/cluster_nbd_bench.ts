/**
 * NBD through a cluster node as a ratio to NBD through a single node, in the same
 * run: fio (nbd engine) on a volume of a lone `atoll serve` and on a volume of a
 * cluster of node processes, through the node holding the write lease; one more
 * line reads through a node that does not hold it (reads forwarded or fetched).
 * Both volumes are written in full first, so the jobs measure in-place I/O; each
 * job starts once the nodes have been quiet for a second (at most 30 s: the
 * syncs and healing after a fill or a write job do not land in the next job).
 *
 * Cases (`--cases`): three nodes at R = 3 (every node holds everything), and the
 * shapes real clusters have, N > R: three nodes at R = 2 and four nodes at R = 3,
 * where the lease holder holds only R/N of the objects (issue 11).
 *
 * A second table gives the CPU every node process used per I/O during each job
 * (/proc, user + system), and the single node's as a ratio to it, and a third
 * splits it between the event loop of the node fio reaches, that node's other
 * threads, and the other nodes (/proc/PID/task): on this
 * machine (2 cores, shared) the nodes and fio compete for the CPU, and what an
 * I/O costs the nodes is what bounds their IOPS (it swings with the
 * neighbours too: compare within one run).
 *
 * Run: `deno run -A bench/cluster_nbd_bench.ts [--runtime S] [--cases n3r3,n3r2,n4r3]
 * [--jobs randread,randwrite,read,write]` (random reads always run: the reads
 * through a non-holder are compared with them; with `--jobs randread` those
 * follow the fill and the holder's reads, no write job).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startCluster } from "../tests/_cluster.ts";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";
import { createVolume } from "../tests/_nbd.ts";
import { cpuSeconds, fio, settle, threadCpuSeconds } from "./_fio.ts";

const sizeBytes = 256 * 1024 * 1024;
const rampSeconds = 1;
const allJobs = [
  { rw: "randread", bs: "4k", depth: 32 },
  { rw: "randwrite", bs: "4k", depth: 32 },
  { rw: "read", bs: "1M", depth: 8 },
  { rw: "write", bs: "1M", depth: 8 },
];
/** The jobs this run measures (`--jobs`; random reads always come first). */
let jobs = allJobs;

/** Cluster shapes: N nodes at R replicas. */
const cases: Record<string, { nodes: number; replicas: number }> = {
  n3r3: { nodes: 3, replicas: 3 },
  n3r2: { nodes: 3, replicas: 2 },
  n4r3: { nodes: 4, replicas: 3 },
};

/**
 * One job's IOPS, and the CPU every node process used per I/O meanwhile (µs):
 * all of it, and split between the first node's event loop (the node fio
 * reaches), its other threads, and the other nodes.
 */
interface JobFigures {
  iops: number;
  cpuUsPerIo: number;
  split: { loop: number; threads: number; others: number };
}

/**
 * Runs one fio job on export `uri` (a volume of `sizeBytes`) and counts the CPU
 * of `nodes` meanwhile, per I/O (the ramp's I/O counted at the job's rate);
 * `nodes[0]` is the node fio reaches.
 */
async function job(uri: string, nodes: TestNode[], args: string[]): Promise<JobFigures> {
  const pids = nodes.map((node) => node.process.pid);
  await settle(() => pids, 30);
  const before = await cpuSeconds(pids);
  const first = await threadCpuSeconds(pids[0]);
  const result = await fio({ kind: "nbd", uri }, [`--size=${sizeBytes}`, ...args]);
  const used = await cpuSeconds(pids) - before;
  const firstUsed = await threadCpuSeconds(pids[0]);
  const timed = args.some((arg) => arg.startsWith("--runtime="));
  const seconds = timed ? Number(args.find((arg) => arg.startsWith("--runtime="))!.slice(10)) : 0;
  const ios = result.iops * (seconds + rampSeconds);
  const perIo = (cpu: number) => ios > 0 ? cpu * 1e6 / ios : 0;
  const loop = firstUsed.main - first.main;
  const threads = firstUsed.others - first.others;
  return {
    iops: result.iops,
    cpuUsPerIo: perIo(used),
    split: { loop: perIo(loop), threads: perIo(threads), others: perIo(used - loop - threads) },
  };
}

function timed(runtime: number): string[] {
  return ["--time_based", `--runtime=${runtime}`, `--ramp_time=${rampSeconds}`];
}

async function measure(uri: string, nodes: TestNode[], runtime: number): Promise<JobFigures[]> {
  await fio({ kind: "nbd", uri }, [`--size=${sizeBytes}`, "--rw=write", "--bs=1M"]); // fill
  const figures = [];
  for (const { rw, bs, depth } of jobs) {
    figures.push(
      await job(uri, nodes, [`--rw=${rw}`, `--bs=${bs}`, `--iodepth=${depth}`, ...timed(runtime)]),
    );
  }
  return figures;
}

/** The holder's figures per job and the random reads through a non-holder. */
interface ClusterFigures {
  holder: JobFigures[];
  forwarded: JobFigures;
}

async function measureCluster(
  nodes: number,
  replicas: number,
  runtime: number,
): Promise<ClusterFigures> {
  const cluster = await startCluster(nodes, () => ["--replicas", String(replicas)]);
  try {
    const [one, two] = cluster.nodes;
    await createVolume(one, "v", { size: sizeBytes });
    const holder = await measure(one.nbdUri("v"), cluster.nodes, runtime);
    const others = cluster.nodes.filter((node) => node !== two);
    const forwarded = await job(two.nbdUri("v"), [two, ...others], [
      "--rw=randread",
      "--bs=4k",
      "--iodepth=32",
      ...timed(runtime),
    ]);
    return { holder, forwarded };
  } finally {
    await cluster.stop();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runtime: { type: "string", default: "8" },
      cases: { type: "string", default: Object.keys(cases).join(",") },
      jobs: { type: "string", default: allJobs.map((job) => job.rw).join(",") },
    },
  });
  const wanted = values.jobs!.split(",");
  jobs = allJobs.filter((job, i) => i === 0 || wanted.includes(job.rw));
  const runtime = Number(values.runtime);
  const chosen = values.cases!.split(",");
  for (const name of chosen) {
    if (!(name in cases)) {
      throw new RangeError(`Cannot run case "${name}": not one of ${Object.keys(cases)}`);
    }
  }
  const single = await startNode();
  let alone: JobFigures[];
  try {
    await createVolume(single, "v", { size: sizeBytes });
    alone = await measure(single.nbdUri("v"), [single], runtime);
  } finally {
    await single.kill9();
    await removeData(single);
  }
  const results: [string, ClusterFigures][] = [];
  for (const name of chosen) {
    const { nodes, replicas } = cases[name];
    results.push([`${nodes} nodes R=${replicas}`, await measureCluster(nodes, replicas, runtime)]);
  }
  const cell = (value: number, ratio: number) =>
    `  ${Math.round(value).toString().padStart(7)} ${ratio.toFixed(2).padStart(5)}`;
  /** One table: `pick` of each job, and `ratio` of each cluster's to the single node's. */
  const table = (
    title: string,
    pick: (figures: JobFigures) => number,
    ratio: (cluster: number, single: number) => number,
  ) => {
    console.log(
      title + "\n" + "job".padEnd(20) + "single node".padStart(12) +
        results.map(([label]) => `  ${label.padStart(13)}`).join(""),
    );
    jobs.forEach((job, i) => {
      const label = `${job.rw} ${job.bs} QD${job.depth}`;
      console.log(
        label.padEnd(20) + Math.round(pick(alone[i])).toString().padStart(12) +
          results.map(([, figures]) => {
            const value = pick(figures.holder[i]);
            return cell(value, ratio(value, pick(alone[i])));
          }).join(""),
      );
    });
    console.log(
      "randread via other".padEnd(20) + "".padStart(12) +
        results.map(([, figures]) => {
          const value = pick(figures.forwarded);
          return cell(value, ratio(value, pick(alone[0])));
        }).join(""),
    );
  };
  table(
    "IOPS through the lease holder, and as a ratio to the single node (same run)",
    (figures) => figures.iops,
    (cluster, single) => cluster / single,
  );
  table(
    "\nCPU of every node process per I/O (µs), and the single node's as a ratio to it",
    (figures) => figures.cpuUsPerIo,
    (cluster, single) => single / cluster,
  );
  console.log("(randread via other: 4k QD32 through a node that does not hold the lease)");
  console.log(
    "\nWhere that CPU goes (µs per I/O): the event loop of the node fio reaches, that node's" +
      "\nother threads (V8's collector and compiler, workers, Deno's blocking pool), the other nodes",
  );
  const split = (figures: JobFigures) =>
    [figures.split.loop, figures.split.threads, figures.split.others]
      .map((us) => Math.round(us).toString()).join(" / ").padStart(17);
  console.log(
    "job".padEnd(20) + "single node".padStart(17) +
      results.map(([label]) => `  ${label.padStart(17)}`).join(""),
  );
  jobs.forEach((job, i) => {
    console.log(
      `${job.rw} ${job.bs} QD${job.depth}`.padEnd(20) + split(alone[i]) +
        results.map(([, figures]) => `  ${split(figures.holder[i])}`).join(""),
    );
  });
  console.log(
    "randread via other".padEnd(20) + "".padStart(17) +
      results.map(([, figures]) => `  ${split(figures.forwarded)}`).join(""),
  );
}
