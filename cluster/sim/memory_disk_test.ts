import assert from "node:assert/strict";
import { engineContract } from "../../core/engine_contract.ts";
import type { Engine } from "../../core/mod.ts";
import { MemoryDisk, MemoryPlatter } from "./_memory_disk.ts";

const now = () => 0;

engineContract("MemoryDisk", {
  create: () => Promise.resolve(new MemoryDisk({ platter: new MemoryPlatter(), now })),
  reopen: async (engine: Engine) => {
    await engine.close();
    return new MemoryDisk({ platter: (engine as MemoryDisk).platter, now });
  },
  destroy: (engine: Engine) => engine.close(),
});

const objectName = `${"0".repeat(31)}1.1.0`;
const blockName = "ab".repeat(32);

Deno.test("MemoryDisk: a crash keeps what was flushed and metadata, loses the rest", async () => {
  const platter = new MemoryPlatter();
  const disk = new MemoryDisk({ platter, now });
  await disk.writeObject(objectName, 0, new Uint8Array([1, 2, 3]));
  await disk.putBlock(blockName, new Uint8Array([9]));
  await disk.flush();
  await disk.writeObject(objectName, 1, new Uint8Array([7]));
  await disk.putBlock("cd".repeat(32), new Uint8Array([8]));
  await disk.putMeta("volume/a", new Uint8Array([5]), 0);
  disk.crash();
  await assert.rejects(async () => await disk.hasBlock(blockName), /crashed/);

  const after = new MemoryDisk({ platter, now });
  const into = new Uint8Array(3);
  await after.readObject(objectName, { offset: 0, length: 3 }, into);
  assert.deepEqual([...into], [1, 2, 3]);
  assert.equal(await after.hasBlock(blockName), true);
  assert.equal(await after.hasBlock("cd".repeat(32)), false);
  assert.equal((await after.getMeta("volume/a"))?.version, 1);
});

Deno.test("MemoryDisk: a journal sync that takes time covers what was appended when it began", async () => {
  const platter = new MemoryPlatter();
  let release = () => {};
  const disk = new MemoryDisk({
    platter,
    now: () => 0,
    syncDelay: () => new Promise<void>((resolve) => release = resolve),
  });
  const part = (byte: number) => new Uint8Array(4).fill(byte);
  disk.appendJournal(1, [part(1)]);
  const first = disk.syncJournal(1);
  disk.appendJournal(1, [part(2)]); // while the sync runs: not covered by it
  const releaseFirst = release;
  const second = disk.syncJournal(1);
  disk.appendJournal(1, [part(3)]);
  releaseFirst();
  await first;
  assert.deepEqual(platter.journals.get(1), [part(1)], "the first sync: what came before it");
  release();
  await second;
  assert.deepEqual(platter.journals.get(1), [part(1), part(2)], "the second: in order");
  assert.equal(disk.appendsDuringSyncs, 2, "parts 2 and 3 came while a sync ran");
  disk.crash();
  const again = new MemoryDisk({ platter, now: () => 0 });
  assert.deepEqual(
    await again.readJournal(1),
    new Uint8Array([1, 1, 1, 1, 2, 2, 2, 2]),
    "a crash keeps what a sync covered, and loses the rest",
  );
});
