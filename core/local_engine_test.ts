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
