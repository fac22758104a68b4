/**
 * SHA-256 throughput on 4 MiB content blocks: hash-wasm, the four-lane core (four blocks a
 * call), @noble/hashes and WebCrypto on the main thread (tinybench), against the HashPool,
 * whose rate is timed with as many jobs in flight as an upload keeps. Prints MB/s (10^6
 * bytes per second) and each engine's ratio to the pool.
 *
 * Run: `deno run -A bench/sha256_bench.ts`
 *
 * @module
 */

import { createHash } from "node:crypto";
import { createSHA256 } from "hash-wasm";
import { sha256 } from "@noble/hashes/sha2.js";
import { Bench } from "tinybench";
import { HashPool } from "../wasm/mod.ts";
import { Sha256x4 } from "../wasm/sha256x4.ts";
import { uploadBlocksInFlightMax } from "../core/limits.ts";

/** Size of one content block, as uploads cut them. */
const blockBytes = 4 * 1024 * 1024;

/** Blocks hashed per pool measurement unless told otherwise. */
const poolBlocksDefault = 64;

/** Pool measurements taken; the median is reported because this machine is noisy. */
const poolRounds = 5;

/** Tinybench time budget per single-thread engine. */
const taskTimeMs = 2000;

/** Options for {@link measurePoolHashRate}. */
export interface PoolHashRateOptions {
  /** Blocks to hash in the timed pass (default 64). */
  blocks?: number;
  /** Bytes per block (default 4 MiB). */
  blockSize?: number;
}

/**
 * Measures how many bytes per second `pool` hashes, keeping as many jobs in flight as an
 * upload does (core/limits.ts), and at least 2 × workers, so no worker waits for the next
 * block and workers get blocks four at a time, as in an upload. Each in-flight slot owns
 * one buffer that travels to a worker and back, so nothing is allocated while timing. One
 * untimed pass first starts the workers and compiles their WASM.
 */
export async function measurePoolHashRate(
  pool: HashPool,
  options: PoolHashRateOptions = {},
): Promise<number> {
  const blocks = options.blocks ?? poolBlocksDefault;
  const blockSize = options.blockSize ?? blockBytes;
  if (!Number.isInteger(blocks) || blocks < 1 || !Number.isInteger(blockSize) || blockSize < 1) {
    throw new RangeError(
      `Cannot measure hash rate: blocks and blockSize must be positive integers, got ${blocks} and ${blockSize}`,
    );
  }
  const inFlight = Math.max(uploadBlocksInFlightMax, 2 * pool.workers);
  const buffers = Array.from({ length: inFlight }, (_, lane) => patternBytes(blockSize, lane));
  await hashBlocks(pool, buffers, inFlight);
  const startMs = performance.now();
  await hashBlocks(pool, buffers, blocks);
  const elapsedSeconds = (performance.now() - startMs) / 1000;
  return (blocks * blockSize) / elapsedSeconds;
}

/** Hashes `count` blocks through `pool`, one lane per buffer, each reusing its buffer. */
async function hashBlocks(pool: HashPool, buffers: Uint8Array[], count: number): Promise<void> {
  let started = 0;
  const lane = async (index: number) => {
    while (started < count) {
      started++;
      const { data, digest } = await pool.hashBlock(buffers[index]);
      if (digest === null) throw new Error("Cannot measure hash rate: block was not hashed");
      buffers[index] = data;
    }
  };
  await Promise.all(buffers.map((_, index) => lane(index)));
}

/** A block of nonzero, varied bytes, touched once so timing sees no page faults. */
function patternBytes(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 17 + (i >>> 12)) & 0xff | 1;
  return bytes;
}

/** The median of a non-empty list. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Single-thread engines on the main thread, timed by tinybench; MB/s by task name. */
async function measureSingleThread(block: Uint8Array<ArrayBuffer>): Promise<Map<string, number>> {
  const hasher = await createSHA256();
  const lanes = await Sha256x4.create();
  const four = [0, 1, 2, 3].map((seed) => patternBytes(block.length, seed));
  const bench = new Bench({ time: taskTimeMs, warmupTime: 250, throws: true });
  bench
    .add("hash-wasm (main thread)", () => {
      hasher.init();
      hasher.update(block);
      hasher.digest("binary");
    })
    .add("four-lane core, 4 blocks a call (main thread)", () => {
      lanes.hash(four);
    })
    .add("@noble/hashes (main thread)", () => {
      sha256(block);
    })
    .add("WebCrypto crypto.subtle", async () => {
      await crypto.subtle.digest("SHA-256", block);
    })
    .add("node:crypto createHash (extra)", () => {
      createHash("sha256").update(block).digest();
    });
  await bench.run();
  console.table(bench.table());
  const rates = new Map<string, number>();
  for (const task of bench.tasks) {
    const result = task.result;
    if (result.state !== "completed") {
      throw new Error(`Cannot report ${task.name}: benchmark task ended ${result.state}`);
    }
    const bytes = task.name.startsWith("four-lane") ? 4 * block.byteLength : block.byteLength;
    rates.set(task.name, bytes / (result.latency.mean / 1000) / 1e6);
  }
  return rates;
}

/** Median MB/s of a pool over {@link poolRounds} measurements. */
async function measurePoolMedian(pool: HashPool): Promise<number> {
  const rates: number[] = [];
  for (let round = 0; round < poolRounds; round++) {
    rates.push((await measurePoolHashRate(pool)) / 1e6);
  }
  return median(rates);
}

async function main(): Promise<void> {
  const block = patternBytes(blockBytes, 0);
  const rates = await measureSingleThread(block);

  const wasmPool = new HashPool({ engine: "wasm" });
  const nativePool = new HashPool({ engine: "native" });
  let poolRate: number;
  try {
    poolRate = await measurePoolMedian(wasmPool);
    rates.set(`HashPool wasm (${wasmPool.workers} workers)`, poolRate);
    rates.set("HashPool native (extra)", await measurePoolMedian(nativePool));
  } finally {
    wasmPool.close();
    nativePool.close();
  }

  console.log(`\nSHA-256 of ${blockBytes / 1024 / 1024} MiB blocks, MB/s = 10^6 bytes/s`);
  console.table(
    [...rates].map(([engine, megabytesPerSecond]) => ({
      engine,
      "MB/s": Math.round(megabytesPerSecond),
      "ratio to pool": Number((megabytesPerSecond / poolRate).toFixed(2)),
    })),
  );
}

if (import.meta.main) await main();
