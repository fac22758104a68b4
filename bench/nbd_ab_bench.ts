/**
 * NBD through this tree against another build of Atoll (a baseline checkout),
 * side by side in one run so that both see the same noise: a lone node and a
 * cluster of three at R=3 from each tree, all running at once, every fio job
 * alternating between the two trees and flipping the order each round. Prints
 * IOPS and p50 completion latency of each job and round, A (baseline) then B
 * (this tree): small random I/O at QD1 and QD32 through a lone node, through
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
import { createVolume, exec } from "../tests/_nbd.ts";

const sizeBytes = 128 * 1024 * 1024;

/** One tree's node processes: a lone node and a cluster of three at R=3. */
interface Side {
  single: TestNode;
  members: TestNode[];
  dir: string;
}

async function startSide(tree: string): Promise<Side> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-ab-" });
  await Deno.writeTextFile(`${dir}/key`, crypto.randomUUID().replaceAll("-", ""));
  const entry = `${tree}/main.ts`;
  const base = ["--gossip", "127.0.0.1:0", "--cluster-key-file", `${dir}/key`, "--replicas", "3"];
  const members = [await startNode({ entry, cwd: tree, args: base })];
  for (let i = 1; i < 3; i++) {
    members.push(
      await startNode({ entry, cwd: tree, args: [...base, "--join", members[0].gossip!] }),
    );
  }
  const single = await startNode({ entry, cwd: tree });
  // The volume is created through the first member, which then holds its lease.
  await retry(() => createVolume(members[0], "v", { size: sizeBytes }));
  await createVolume(single, "v", { size: sizeBytes });
  return { single, members, dir };
}

async function retry(step: () => Promise<unknown>): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      await step();
      return;
    } catch (error) {
      if (attempt >= 30) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/** IOPS and p50 completion latency (µs) of one fio run. */
async function fio(uri: string, args: string[]): Promise<{ iops: number; p50: number }> {
  const out = await exec("fio", [
    "--name=ab",
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--size=${sizeBytes}`,
    "--output-format=json",
    ...args,
  ]);
  if (out.code !== 0) throw new Error(`fio failed: ${out.stderr}${out.stdout}`);
  const job = JSON.parse(out.stdout.slice(out.stdout.indexOf("{"))).jobs[0];
  const side = job.read.iops > job.write.iops ? job.read : job.write;
  return { iops: Math.round(side.iops), p50: side.clat_ns.percentile["50.000000"] / 1000 };
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
  { name: "holder randwrite QD1", uri: (s) => s.members[0].nbdUri("v"), args: ["--rw=randwrite"] },
  {
    name: "holder randwrite+flush QD1",
    uri: (s) => s.members[0].nbdUri("v"),
    args: ["--rw=randwrite", "--fsync=1"],
  },
  {
    name: "holder randwrite QD32",
    uri: (s) => s.members[0].nbdUri("v"),
    args: ["--rw=randwrite", "--iodepth=32"],
  },
  {
    name: "holder randread QD32",
    uri: (s) => s.members[0].nbdUri("v"),
    args: ["--rw=randread", "--iodepth=32"],
  },
  { name: "other randread QD1", uri: (s) => s.members[1].nbdUri("v"), args: ["--rw=randread"] },
  {
    name: "other randread QD32",
    uri: (s) => s.members[1].nbdUri("v"),
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
      for (const node of [side.members[0], side.single]) {
        await fio(node.nbdUri("v"), ["--rw=write", "--bs=1M", "--iodepth=8"]); // written in full
      }
    }
    const cells = chosen.map(() => [[] as string[], [] as string[]]);
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const [j, job] of chosen.entries()) {
        for (const i of round % 2 === 0 ? [0, 1] : [1, 0]) {
          const { iops, p50 } = await fio(job.uri(sides[i]), [
            "--bs=4k",
            ...job.args,
            "--time_based",
            `--runtime=${values.runtime}`,
            "--ramp_time=1",
          ]);
          cells[j][i].push(`${iops}/${p50.toFixed(0)}µs`);
        }
      }
    }
    console.log("IOPS/p50 per round; A: baseline, B: this tree");
    chosen.forEach((job, j) => {
      console.log(
        `${job.name.padEnd(27)} A ${cells[j][0].join(" ")}  | B ${cells[j][1].join(" ")}`,
      );
    });
  } finally {
    for (const side of sides) {
      for (const node of [...side.members, side.single]) {
        await node.kill9();
        await removeData(node);
      }
      await Deno.remove(side.dir, { recursive: true });
    }
  }
}
