/**
 * A stand-in for main.ts in a `deno bundle` output: the same file is the program and its
 * own hash worker. As the program it prints the SHA-256 of "abc" from a wasm HashPool.
 *
 * @module
 */

import { HashPool, toHex } from "../hash_pool.ts";
import { isWorkerContext, serveHashJobs } from "../hash_worker.ts";

if (isWorkerContext()) {
  serveHashJobs();
} else if (import.meta.main) {
  const pool = new HashPool({ engine: "wasm", workers: 1 });
  try {
    console.log(toHex(await pool.digest(new TextEncoder().encode("abc"))));
  } finally {
    pool.close();
  }
}
