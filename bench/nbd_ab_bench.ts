/**
 * NBD through this tree against another build of Atoll (a baseline checkout),
 * side by side in one run so that both see the same noise: a lone node and a
 * cluster of three at R=3 from each tree, all running at once, every fio job
 * alternating between the two trees and flipping the order each round. Prints
 * IOPS, p50 completion latency and the CPU the side's node processes used per
 * I/O of each job and round, A (baseline) then B (this tree): small random I/O at QD1 and QD32 through a lone node, through
 * the cluster's lease holder (writes, writes with a flush after each, reads)
 * and through a member that does not hold the lease (reads).
 *
 * Run:
 * ```sh
 * git worktree add /tmp/atoll-base BASE_COMMIT
 * deno run -A bench/nbd_ab_bench.ts --baseline /tmp/atoll-base [--rounds 3] [--runtime 4] [--jobs randwrite,other]
 * ```
 * `--jobs`: only the jobs whose name contains one of these words.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";
import { startCluster, type TestProcessCluster } from "../tests/_cluster.ts";
import { createVolume } from "../tests/_nbd.ts";
import { cpuSeconds, fio } from "./_fio.ts";

const sizeBytes = 128 * 1024 * 1024;

/** One tree's node processes: a lone node and a cluster of three at R=3. */
interface Side {
  single: TestNode;
  cluster: TestProcessCluster;
}

async function startSide(tree: string): Promise<Side> {
  const from = { entry: `${tree}/main.ts`, cwd: tree };
  const cluster = await startCluster(3, () => ["--replicas", "3"], from);
  try {
    const single = await startNode(from);
    // The volume is created through the first member, which then holds its lease.
    await createVolume(cluster.nodes[0], "v", { size: sizeBytes });
    await createVolume(single, "v", { size: sizeBytes });
    return { single, cluster };
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

/** IOPS and p50 completion latency (µs) of one fio run on volume `v` at `uri`. */
async function run(uri: string, args: string[]): Promise<{ iops: number; p50: number }> {
  const result = await fio({ kind: "nbd", uri }, [`--size=${sizeBytes}`, ...args]);
  return { iops: Math.round(result.iops), p50: result.p50Us };
}

/** run(), and the CPU `nodes` used per I/O meanwhile (µs; the ramp's I/O at the job's rate). */
async function measured(
  uri: string,
  nodes: TestNode[],
  args: string[],
  seconds: number,
): Promise<{ iops: number; p50: number; cpuUs: number }> {
  const pids = nodes.map((node) => node.process.pid);
  const before = await cpuSeconds(pids);
  const result = await run(uri, args);
  const used = await cpuSeconds(pids) - before;
  const ios = result.iops * seconds;
  return { ...result, cpuUs: ios > 0 ? Math.round(used * 1e6 / ios) : 0 };
}

const jobs: { name: string; uri: (side: Side) => string; args: string[] }[] = [
  { name: "single randwrite QD1", uri: (s) => s.single.nbdUri("v"), args: ["--rw=randwrite"] },
  { name: "single randread QD1", uri: (s) => s.single.nbdUri("v"), args: ["--rw=randread"] },
  {
    name: "single randwrite QD32",
    uri: (s) => s.single.nbdUri("v"),
    args: ["--rw=randwrite", "--iodepth=32"],
  },
  {
    name: "single randread QD32",
    uri: (s) => s.single.nbdUri("v"),
    args: ["--rw=randread", "--iodepth=32"],
  },
  {
    name: "holder randwrite QD1",
    uri: (s) => s.cluster.nodes[0].nbdUri("v"),
    args: ["--rw=randwrite"],
  },
  {
    name: "holder randwrite+flush QD1",
    uri: (s) => s.cluster.nodes[0].nbdUri("v"),
    args: ["--rw=randwrite", "--fsync=1"],
  },
  {
    name: "holder randwrite QD32",
    uri: (s) => s.cluster.nodes[0].nbdUri("v"),
    args: ["--rw=randwrite", "--iodepth=32"],
  },
  {
    name: "holder randread QD32",
    uri: (s) => s.cluster.nodes[0].nbdUri("v"),
    args: ["--rw=randread", "--iodepth=32"],
  },
  {
    name: "other randread QD1",
    uri: (s) => s.cluster.nodes[1].nbdUri("v"),
    args: ["--rw=randread"],
  },
  {
    name: "other randread QD32",
    uri: (s) => s.cluster.nodes[1].nbdUri("v"),
    args: ["--rw=randread", "--iodepth=32"],
  },
];

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      baseline: { type: "string" },
      rounds: { type: "string", default: "3" },
      runtime: { type: "string", default: "4" },
      jobs: { type: "string" },
    },
  });
  if (values.baseline === undefined) {
    console.error("usage: deno run -A bench/nbd_ab_bench.ts --baseline DIR [--rounds N]");
    Deno.exit(2);
  }
  const here = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");
  const words = values.jobs?.split(",") ?? null;
  const chosen = jobs.filter((job) => words === null || words.some((w) => job.name.includes(w)));
  const sides: Side[] = [];
  try {
    sides.push(await startSide(values.baseline), await startSide(here));
    for (const side of sides) {
      for (const node of [side.cluster.nodes[0], side.single]) {
        await run(node.nbdUri("v"), ["--rw=write", "--bs=1M", "--iodepth=8"]); // written in full
      }
    }
    const cells = chosen.map(() => [[] as string[], [] as string[]]);
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const [j, job] of chosen.entries()) {
        for (const i of round % 2 === 0 ? [0, 1] : [1, 0]) {
          const side = sides[i];
          const nodes = job.name.startsWith("single") ? [side.single] : side.cluster.nodes;
          const { iops, p50, cpuUs } = await measured(job.uri(side), nodes, [
            "--bs=4k",
            ...job.args,
            "--time_based",
            `--runtime=${values.runtime}`,
            "--ramp_time=1",
          ], Number(values.runtime) + 1);
          cells[j][i].push(`${iops}/${p50.toFixed(0)}µs/${cpuUs}`);
        }
      }
    }
    console.log("IOPS/p50/node CPU µs per I/O, per round; A: baseline, B: this tree");
    chosen.forEach((job, j) => {
      console.log(
        `${job.name.padEnd(27)} A ${cells[j][0].join(" ")}  | B ${cells[j][1].join(" ")}`,
      );
    });
  } finally {
    for (const side of sides) {
      await side.single.kill9();
      await removeData(side.single);
      await side.cluster.stop();
    }
  }
}
