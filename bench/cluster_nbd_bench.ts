/**
 * NBD through a cluster node as a ratio to NBD through a single node, in the same
 * run: fio (nbd engine) on a volume of a lone `atoll serve` and on a volume of a
 * cluster of node processes, through the node holding the write lease; one more
 * line reads through a node that does not hold it (reads forwarded or fetched).
 * Both volumes are written in full first, so the jobs measure in-place I/O.
 *
 * Cases (`--cases`): three nodes at R = 3 (every node holds everything), and the
 * shapes real clusters have, N > R: three nodes at R = 2 and four nodes at R = 3,
 * where the lease holder holds only R/N of the objects (issue 11).
 *
 * Run: `deno run -A bench/cluster_nbd_bench.ts [--runtime S] [--cases n3r3,n3r2,n4r3]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startCluster } from "../tests/_cluster.ts";
import { removeData, startNode } from "../tests/_node.ts";
import { createVolume, exec } from "../tests/_nbd.ts";

const sizeBytes = 256 * 1024 * 1024;
const jobs = [
  { rw: "randread", bs: "4k", depth: 32 },
  { rw: "randwrite", bs: "4k", depth: 32 },
  { rw: "read", bs: "1M", depth: 8 },
  { rw: "write", bs: "1M", depth: 8 },
];

/** Cluster shapes: N nodes at R replicas. */
const cases: Record<string, { nodes: number; replicas: number }> = {
  n3r3: { nodes: 3, replicas: 3 },
  n3r2: { nodes: 3, replicas: 2 },
  n4r3: { nodes: 4, replicas: 3 },
};

async function fio(uri: string, args: string[]): Promise<number> {
  const output = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const out = await exec("fio", [
      "--name=bench",
      "--ioengine=nbd",
      `--uri=${uri}`,
      `--size=${sizeBytes}`,
      "--output-format=json",
      `--output=${output}`,
      ...args,
    ]);
    if (out.code !== 0) throw new Error(`fio failed: ${out.stderr}${out.stdout}`);
    const job = JSON.parse(await Deno.readTextFile(output)).jobs[0];
    return job.read.iops + job.write.iops;
  } finally {
    await Deno.remove(output);
  }
}

function timed(runtime: number): string[] {
  return ["--time_based", `--runtime=${runtime}`, "--ramp_time=1"];
}

async function measure(uri: string, runtime: number): Promise<number[]> {
  await fio(uri, ["--rw=write", "--bs=1M"]); // fill: in-place I/O from here on
  const iops = [];
  for (const job of jobs) {
    iops.push(
      await fio(uri, [
        `--rw=${job.rw}`,
        `--bs=${job.bs}`,
        `--iodepth=${job.depth}`,
        ...timed(runtime),
      ]),
    );
  }
  return iops;
}

/** The holder's figures per job and the random reads through a non-holder. */
interface ClusterFigures {
  holder: number[];
  forwarded: number;
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
    const holder = await measure(one.nbdUri("v"), runtime);
    const forwarded = await fio(two.nbdUri("v"), [
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
    },
  });
  const runtime = Number(values.runtime);
  const chosen = values.cases!.split(",");
  for (const name of chosen) {
    if (!(name in cases)) {
      throw new RangeError(`Cannot run case "${name}": not one of ${Object.keys(cases)}`);
    }
  }
  const single = await startNode();
  let alone: number[];
  try {
    await createVolume(single, "v", { size: sizeBytes });
    alone = await measure(single.nbdUri("v"), runtime);
  } finally {
    await single.kill9();
    await removeData(single);
  }
  const results: [string, ClusterFigures][] = [];
  for (const name of chosen) {
    const { nodes, replicas } = cases[name];
    results.push([`${nodes} nodes R=${replicas}`, await measureCluster(nodes, replicas, runtime)]);
  }
  const cell = (value: number, reference: number) =>
    `${Math.round(value).toString().padStart(7)} ${(value / reference).toFixed(2).padStart(5)}`;
  console.log(
    "IOPS through the lease holder, and as a ratio to the single node (same run)\n" +
      "job".padEnd(20) + "single node".padStart(12) +
      results.map(([label]) => `  ${label.padStart(13)}`).join(""),
  );
  jobs.forEach((job, i) => {
    const label = `${job.rw} ${job.bs} QD${job.depth}`.padEnd(20);
    console.log(
      label + Math.round(alone[i]).toString().padStart(12) +
        results.map(([, figures]) => `  ${cell(figures.holder[i], alone[i])}`).join(""),
    );
  });
  console.log(
    "randread via other".padEnd(20) + "".padStart(12) +
      results.map(([, figures]) => `  ${cell(figures.forwarded, alone[0])}`).join(""),
  );
  console.log("(randread via other: 4k QD32 through a node that does not hold the lease)");
}
