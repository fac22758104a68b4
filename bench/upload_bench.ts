/**
 * Upload throughput through the HTTP API, as a ratio to the hash pool's own
 * SHA-256 rate measured in the same run (the machine is noisy: ratios, not
 * absolutes). A real node process receives a 1 GiB image of distinct blocks from
 * curl, then the same bytes again under another name (dedup: nothing new is
 * written). Targets (issue 2): upload ≥ 0.7 of the pool's rate, re-upload ≥ 0.9.
 *
 * Run: `deno run -A bench/upload_bench.ts [--size-mib N] [--rounds N] [--hash-engine wasm|native]`
 */
import { parseArgs } from "node:util";
import { HashPool } from "../wasm/mod.ts";
import { measurePoolHashRate } from "./sha256_bench.ts";
import { patternBytes, run } from "../tests/_files.ts";
import { removeData, startNode } from "../tests/_node.ts";

const MiB = 1024 * 1024;

/**
 * Writes `sizeMib` MiB of distinct 4 MiB blocks to `path`; another `series`
 * gives other blocks again (an upload of them is not deduplicated).
 */
export async function writeImage(path: string, sizeMib: number, series = 0): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let block = 0; block < sizeMib / 4; block++) {
    await file.write(patternBytes(4 * MiB, series * (sizeMib / 4) + block + 1));
  }
  file.close();
}

/** Seconds curl takes to PUT `path` as image `name`. */
export async function curlUpload(url: string, path: string, name: string): Promise<number> {
  const out = await run("curl", [
    "-sS",
    "--fail-with-body",
    "-T",
    path,
    "-o",
    "/dev/null",
    "-w",
    "%{time_total}",
    `${url}/v1/images/${name}`,
  ]);
  return Number(out);
}

/** Median of some numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs the benchmark and returns the ratios (also printed). */
export async function uploadBench(options: {
  sizeMib: number;
  rounds: number;
  hashEngine: "wasm" | "native";
}): Promise<{ upload: number; reupload: number }> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-bench-" });
  const path = `${dir}/image.raw`;
  await writeImage(path, options.sizeMib);
  const bytes = options.sizeMib * MiB;
  const node = await startNode({ args: ["--hash-engine", options.hashEngine] });
  const pool = new HashPool({ engine: options.hashEngine });
  const poolRates: number[] = [], uploads: number[] = [], reuploads: number[] = [];
  try {
    for (let round = 0; round < options.rounds; round++) {
      // Interleave the reference with the measured runs so both see the same noise.
      poolRates.push(await measurePoolHashRate(pool, { blocks: 64 }));
      uploads.push(bytes / await curlUpload(node.url, path, `first-${round}`));
      reuploads.push(bytes / await curlUpload(node.url, path, `again-${round}`));
      for (const name of [`first-${round}`, `again-${round}`]) {
        await (await node.fetch(`/v1/images/${name}`, { method: "DELETE" })).body?.cancel();
      }
      await (await node.fetch("/v1/gc", { method: "POST" })).body?.cancel();
    }
  } finally {
    pool.close();
    await node.stop();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
  const poolRate = median(poolRates);
  const mbps = (rate: number) => (rate / 1e6).toFixed(0).padStart(6);
  const result = { upload: median(uploads) / poolRate, reupload: median(reuploads) / poolRate };
  console.log(
    `upload of ${options.sizeMib} MiB, ${options.rounds} rounds, medians, engine ${options.hashEngine}`,
  );
  console.log(`  pool hashing        ${mbps(poolRate)} MB/s   1.00`);
  console.log(
    `  upload (new)        ${mbps(median(uploads))} MB/s   ${
      result.upload.toFixed(2)
    }  (target >= 0.70)`,
  );
  console.log(
    `  re-upload (dedup)   ${mbps(median(reuploads))} MB/s   ${
      result.reupload.toFixed(2)
    }  (target >= 0.90)`,
  );
  return result;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "size-mib": { type: "string", default: "1024" },
      rounds: { type: "string", default: "3" },
      "hash-engine": { type: "string", default: "wasm" },
    },
  });
  const hashEngine = values["hash-engine"] === "native" ? "native" : "wasm";
  await uploadBench({
    sizeMib: Number(values["size-mib"]),
    rounds: Number(values.rounds),
    hashEngine,
  });
}
