/**
 * SHA-256 of content blocks for uploads: a pool of hash-wasm workers (or WebCrypto) with
 * zero-copy transfer and all-zero block detection.
 *
 * @example
 * ```ts
 * import { HashPool, toHex } from "./wasm/mod.ts";
 * const pool = new HashPool();
 * const { data, digest } = await pool.hashBlock(block, { detectZero: true });
 * console.log(digest === null ? "zero block" : toHex(digest));
 * pool.close();
 * ```
 *
 * @module
 */

export {
  type BlockDigest,
  type HashEngineName,
  HashPool,
  type HashPoolOptions,
  hashWorkersMax,
  toHex,
} from "./hash_pool.ts";
export { isWorkerContext, serveHashJobs } from "./hash_worker.ts";
export { MemoryToucher } from "./memory_toucher.ts";
