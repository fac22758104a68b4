/**
 * NBD through a cluster node as a ratio to NBD through a single node, in the same
 * run: fio (nbd engine) on a volume of a lone `atoll serve` and on a volume of a
 * three-node cluster (R = 3), through the node holding the write lease; one more
 * line reads through a node that does not hold it (reads forwarded to the holder).
 * Both volumes are written in full first, so the jobs measure in-place I/O.
 *
 * Run: `deno run -A bench/cluster_nbd_bench.ts [--runtime S]`
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

async function measure(uri: string, runtime: number): Promise<number[]> {
  await fio(uri, ["--rw=write", "--bs=1M"]); // fill: in-place I/O from here on
  const iops = [];
  for (const job of jobs) {
    iops.push(
      await fio(uri, [
        `--rw=${job.rw}`,
        `--bs=${job.bs}`,
        `--iodepth=${job.depth}`,
        "--time_based",
        `--runtime=${runtime}`,
        "--ramp_time=1",
      ]),
    );
  }
  return iops;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { runtime: { type: "string", default: "8" } },
  });
  const runtime = Number(values.runtime);
  const single = await startNode();
  let alone: number[];
  try {
    await createVolume(single, "v", { size: sizeBytes });
    alone = await measure(single.nbdUri("v"), runtime);
  } finally {
    await single.kill9();
    await removeData(single);
  }
  const cluster = await startCluster(3);
  let clustered: number[], forwarded: number;
  try {
    const [one, two] = cluster.nodes;
    await createVolume(one, "v", { size: sizeBytes });
    clustered = await measure(one.nbdUri("v"), runtime);
    forwarded = await fio(two.nbdUri("v"), [
      "--rw=randread",
      "--bs=4k",
      "--iodepth=32",
      "--time_based",
      `--runtime=${runtime}`,
      "--ramp_time=1",
    ]);
  } finally {
    await cluster.stop();
  }
  console.log("job                 single node    cluster (holder, R=3)   ratio");
  jobs.forEach((job, i) => {
    const label = `${job.rw} ${job.bs} QD${job.depth}`.padEnd(20);
    console.log(
      `${label}${Math.round(alone[i]).toString().padStart(8)} IOPS ${
        Math.round(clustered[i]).toString().padStart(12)
      } IOPS ${(clustered[i] / alone[i]).toFixed(2).padStart(11)}`,
    );
  });
  console.log(
    `randread 4k QD32 through a non-holder (forwarded): ${Math.round(forwarded)} IOPS, ` +
      `${(forwarded / alone[0]).toFixed(2)} of single node`,
  );
}
