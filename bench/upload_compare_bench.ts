/**
 * Upload throughput through the HTTP port of this tree against another build
 * of Atoll (a baseline checkout), in interleaved rounds of one run so that both
 * see the same noise: a ratio, not absolutes. Each round uploads the same
 * image of distinct blocks with curl to a node of each build, then deletes it
 * and collects garbage. Written to check that owning the HTTP front
 * (net/http_server.ts) costs uploads nothing against Deno.serve. Besides the
 * rates it reports the node's CPU time per GiB (user + system, all threads,
 * from /proc), which a loaded machine disturbs less than wall time.
 *
 * Run:
 * ```sh
 * git worktree add /tmp/atoll-base BASE_COMMIT
 * deno run -A bench/upload_compare_bench.ts --baseline /tmp/atoll-base [--size-mib 1024] [--rounds 5]
 * ```
 */
import { parseArgs } from "node:util";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";
import { curlUpload, median, writeImage } from "./upload_bench.ts";

const MiB = 1024 * 1024;

/** CPU seconds (user + system, every thread) process `pid` has used. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks
}

/** Uploads `path` to `node` once; bytes per second, and CPU seconds per GiB. */
async function upload(
  node: TestNode,
  path: string,
  bytes: number,
): Promise<{ rate: number; cpuPerGib: number }> {
  const cpuBefore = await cpuSeconds(node.process.pid);
  const seconds = await curlUpload(node.url, path, "bench");
  const cpu = await cpuSeconds(node.process.pid) - cpuBefore;
  await (await node.fetch("/v1/images/bench", { method: "DELETE" })).body?.cancel();
  await (await node.fetch("/v1/gc", { method: "POST" })).body?.cancel();
  return { rate: bytes / seconds, cpuPerGib: cpu / (bytes / 1024 ** 3) };
}

/** Runs the comparison and returns the median rates and their ratio (also printed). */
export async function uploadCompare(options: {
  baseline: string;
  sizeMib: number;
  rounds: number;
}): Promise<{ current: number; baseline: number; ratio: number; cpuRatio: number }> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-bench-" });
  const path = `${dir}/image.raw`;
  await writeImage(path, options.sizeMib);
  const bytes = options.sizeMib * MiB;
  const current = await startNode();
  const baseline = await startNode({ entry: `${options.baseline}/main.ts`, cwd: options.baseline });
  const rates = { current: [] as number[], baseline: [] as number[] };
  const cpu = { current: [] as number[], baseline: [] as number[] };
  try {
    for (let round = 0; round < options.rounds; round++) {
      // Alternate which build goes first, so neither always meets a warmer page cache.
      const order = round % 2 === 0
        ? ["current", "baseline"] as const
        : ["baseline", "current"] as const;
      for (const which of order) {
        const node = which === "current" ? current : baseline;
        const measured = await upload(node, path, bytes);
        rates[which].push(measured.rate);
        cpu[which].push(measured.cpuPerGib);
      }
      console.log(
        `round ${round + 1}: current ${(rates.current.at(-1)! / 1e6).toFixed(0)} MB/s ` +
          `${cpu.current.at(-1)!.toFixed(2)} CPU s/GiB, baseline ` +
          `${(rates.baseline.at(-1)! / 1e6).toFixed(0)} MB/s ` +
          `${cpu.baseline.at(-1)!.toFixed(2)} CPU s/GiB`,
      );
    }
  } finally {
    for (const node of [current, baseline]) {
      await node.stop();
      await removeData(node);
    }
    await Deno.remove(dir, { recursive: true });
  }
  const result = {
    current: median(rates.current),
    baseline: median(rates.baseline),
    ratio: median(rates.current) / median(rates.baseline),
    cpuRatio: median(cpu.current) / median(cpu.baseline),
  };
  console.log(
    `upload of ${options.sizeMib} MiB, ${options.rounds} rounds, medians: current ` +
      `${(result.current / 1e6).toFixed(0)} MB/s, baseline ${
        (result.baseline / 1e6).toFixed(0)
      } MB/s, ` +
      `ratio ${result.ratio.toFixed(3)} (target >= 0.95); CPU per GiB: current ` +
      `${median(cpu.current).toFixed(2)} s, baseline ${median(cpu.baseline).toFixed(2)} s, ` +
      `ratio ${result.cpuRatio.toFixed(3)} (lower is cheaper)`,
  );
  return result;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      baseline: { type: "string" },
      "size-mib": { type: "string", default: "1024" },
      rounds: { type: "string", default: "5" },
    },
  });
  if (values.baseline === undefined) {
    throw new TypeError("Cannot compare: --baseline DIR (a checkout of the build to compare with)");
  }
  await uploadCompare({
    baseline: values.baseline,
    sizeMib: Number(values["size-mib"]),
    rounds: Number(values.rounds),
  });
}
