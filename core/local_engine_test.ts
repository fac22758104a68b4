import assert from "node:assert/strict";
import { engineContract } from "./engine_contract.ts";
import { LocalEngine } from "./local_engine.ts";
import type { Engine } from "./engine.ts";

engineContract("LocalEngine", {
  create: async () => await LocalEngine.open({ dir: await Deno.makeTempDir() }),
  reopen: async (engine) => {
    await engine.close();
    return await LocalEngine.open({ dir: (engine as LocalEngine).dir });
  },
  destroy: async (engine: Engine) => {
    await engine.close();
    await Deno.remove((engine as LocalEngine).dir, { recursive: true });
  },
});

Deno.test("LocalEngine.open() refuses a data directory another engine holds", async () => {
  const dir = await Deno.makeTempDir();
  const engine = await LocalEngine.open({ dir });
  try {
    await assert.rejects(LocalEngine.open({ dir }), /another process holds its lock/);
  } finally {
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalEngine.open() removes half-written files left by a crash", async () => {
  const dir = await Deno.makeTempDir();
  await (await LocalEngine.open({ dir })).close();
  await Deno.writeTextFile(`${dir}/tmp/123.1`, "half a block");
  const engine = await LocalEngine.open({ dir });
  try {
    assert.deepEqual([...Deno.readDirSync(`${dir}/tmp`)], []);
  } finally {
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalEngine.flush() succeeds when an unsynced block is deleted meanwhile", async () => {
  const dir = await Deno.makeTempDir();
  const engine = await LocalEngine.open({ dir });
  try {
    const hashes = Array.from({ length: 8 }, (_, i) => i.toString(16).repeat(64));
    for (const hash of hashes) await engine.putBlock(hash, new Uint8Array(64 * 1024).fill(1));
    const flushed = engine.flush();
    // Garbage collection of a failed upload's blocks may run while a flush settles them.
    await engine.deleteBlock(hashes[7]);
    await engine.deleteBlock(hashes[0]);
    await flushed;
    for (const [i, hash] of hashes.entries()) {
      assert.equal(await engine.hasBlock(hash), i !== 0 && i !== 7, `block ${i}`);
    }
    assert.deepEqual([...Deno.readDirSync(`${dir}/tmp`)], [], "no temporary file left");
  } finally {
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});
