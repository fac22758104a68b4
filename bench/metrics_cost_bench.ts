/**
 * What per-volume metrics cost on the NBD path: fio 4 KiB random read and
 * random write IOPS (QD32, nbd engine) against two nodes started alike, one
 * with `--volume-metrics on` (every request counted and timed), one with
 * `--volume-metrics off`, in the same run. Runs alternate between the two
 * within every round and the order flips each round (the machine is noisy);
 * the table shows the medians and the median of the per-round ratios, and the
 * CPU seconds each node spent per 100k requests. Goal (issue 14): on/off
 * IOPS >= 0.97 (under 3% loss).
 *
 * While the "on" node serves, a scraper reads its /metrics every second, as
 * Prometheus would, so rendering counts in the cost too.
 *
 * Run: `deno task bench:metrics [--size-mib N] [--runtime S] [--rounds N]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";
import { cpuSeconds, fio } from "./_fio.ts";

const MiB = 1024 * 1024;
/** The loss issue 14 accepts: metrics on must keep 97% of the IOPS. */
const ratioTarget = 0.97;
/** How often the scraper reads /metrics of the node with metrics on. */
const scrapeIntervalMs = 1000;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    "size-mib": { type: "string", default: "256" },
    runtime: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
  },
});
const sizeBytes = Number(values["size-mib"]) * MiB;
const runtimeSeconds = Number(values.runtime);
const rounds = Number(values.rounds);

interface Side {
  label: "on" | "off";
  node: TestNode;
  uri: string;
}

async function startSide(label: "on" | "off"): Promise<Side> {
  const node = await startNode({ args: ["--volume-metrics", label] });
  const response = await node.fetch("/v1/volumes", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "bench", size: sizeBytes }),
  });
  if (response.status !== 201) throw new Error(`create volume: ${await response.text()}`);
  const uri = node.nbdUri("bench");
  // Written in full first: reads measure data, writes in-place overwrites.
  await fio({ kind: "nbd", uri }, ["--rw=write", "--bs=1m", "--iodepth=8", `--size=${sizeBytes}`]);
  return { label, node, uri };
}

const jobs = [
  { name: "rand read 4K QD32", rw: "randread" },
  { name: "rand write 4K QD32", rw: "randwrite" },
];

function median(numbers: number[]): number {
  const sorted = [...numbers].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const sides = [await startSide("on"), await startSide("off")];
const on = sides[0];
let scraping = true;
const scraper = (async () => {
  while (scraping) {
    await (await on.node.fetch("/metrics")).text();
    await new Promise((resolve) => setTimeout(resolve, scrapeIntervalMs));
  }
})();
try {
  console.log(
    `metrics cost: ${rounds} rounds of ${runtimeSeconds} s, volume ${sizeBytes / MiB} MiB\n`,
  );
  console.log("| job | IOPS on | IOPS off | on/off | CPU s per 100k req on | off |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  let worst = Infinity;
  for (const job of jobs) {
    const iops: Record<string, number[]> = { on: [], off: [] };
    const cpu: Record<string, number[]> = { on: [], off: [] };
    const ratios: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      const got: Record<string, number> = {};
      for (const side of order) {
        const pid = side.node.process.pid;
        const cpuBefore = await cpuSeconds([pid]);
        const result = await fio({ kind: "nbd", uri: side.uri }, [
          `--rw=${job.rw}`,
          "--bs=4k",
          "--iodepth=32",
          `--size=${sizeBytes}`,
          "--time_based",
          "--ramp_time=2",
          `--runtime=${runtimeSeconds}`,
        ]);
        const spent = await cpuSeconds([pid]) - cpuBefore;
        got[side.label] = result.iops;
        iops[side.label].push(result.iops);
        cpu[side.label].push(spent / (result.iops * (runtimeSeconds + 2)) * 100_000);
      }
      ratios.push(got.on / got.off);
    }
    const ratio = median(ratios);
    worst = Math.min(worst, ratio);
    console.log(
      `| ${job.name} | ${median(iops.on).toFixed(0)} | ${median(iops.off).toFixed(0)} | ` +
        `${ratio.toFixed(3)} | ${median(cpu.on).toFixed(2)} | ${median(cpu.off).toFixed(2)} |`,
    );
  }
  console.log(
    `\nworst on/off ratio ${worst.toFixed(3)}; goal >= ${ratioTarget} ` +
      `(${worst >= ratioTarget ? "met" : "NOT met"})`,
  );
} finally {
  scraping = false;
  await scraper;
  for (const side of sides) {
    await side.node.stop();
    await removeData(side.node);
  }
}
