/** Test helper: a Store on a temporary directory with a small block size. */
import type { Engine } from "./engine.ts";
import { LocalEngine } from "./local_engine.ts";
import { Store, type VolumeAccess } from "./store.ts";
import { HashPool } from "../wasm/hash_pool.ts";

/** Block size of test stores: small, so tests touch many entries cheaply. */
export const testBlockSize = 64 * 1024;

/**
 * Opens a store on `dir` (a new temporary directory when omitted); `access`:
 * the cluster's say on volume access (none: a single node).
 */
export async function openTestStore(
  dir?: string,
  access?: VolumeAccess,
): Promise<Store & { dir: string }> {
  dir ??= await Deno.makeTempDir({ prefix: "atoll-core-" });
  const engine = await LocalEngine.open({ dir });
  const store = new Store({
    engine,
    pool: new HashPool({ engine: "wasm", workers: 2 }),
    blockSize: testBlockSize,
    gcDelayMs: 60_000,
    access,
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

/**
 * A store on `dir` whose engine runs `hooks` in place of its own methods of the
 * same names (each gets the real engine first): a fault or a collection can then
 * be made to happen at the worst moment.
 */
export async function storeWithHooks(
  dir: string,
  hooks: Partial<Record<keyof Engine, (engine: Engine, ...args: never[]) => unknown>>,
): Promise<Store> {
  const engine = await LocalEngine.open({ dir });
  const hooked = new Proxy(engine, {
    get(target, property) {
      const hook = hooks[property as keyof Engine];
      if (hook !== undefined) return (...args: never[]) => hook(target, ...args);
      const value = Reflect.get(target, property);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as Engine;
  return new Store({
    engine: hooked,
    pool: new HashPool({ engine: "wasm", workers: 2 }),
    blockSize: testBlockSize,
    gcDelayMs: 60_000,
  });
}
