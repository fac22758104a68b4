/** Test helper: a Store on a temporary directory with a small block size. */
import { LocalEngine } from "./local_engine.ts";
import { Store } from "./store.ts";
import { HashPool } from "../wasm/hash_pool.ts";

/** Block size of test stores: small, so tests touch many entries cheaply. */
export const testBlockSize = 64 * 1024;

/** Opens a store on `dir` (a new temporary directory when omitted). */
export async function openTestStore(dir?: string): Promise<Store & { dir: string }> {
  dir ??= await Deno.makeTempDir({ prefix: "atoll-core-" });
  const engine = await LocalEngine.open({ dir });
  const store = new Store({
    engine,
    pool: new HashPool({ engine: "wasm", workers: 2 }),
    blockSize: testBlockSize,
    gcDelayMs: 60_000,
  });
  return Object.assign(store, { dir });
}

/** Closes a store and removes its directory. */
export async function destroyTestStore(store: Store & { dir: string }): Promise<void> {
  await store.close();
  await Deno.remove(store.dir, { recursive: true });
}

export { patternBytes } from "../tests/_files.ts";

/** An async iterable that yields `bytes` in chunks of `chunk` bytes. */
export async function* chunked(bytes: Uint8Array, chunk = 10_000): AsyncIterable<Uint8Array> {
  for (let at = 0; at < bytes.length; at += chunk) yield bytes.slice(at, at + chunk);
}
