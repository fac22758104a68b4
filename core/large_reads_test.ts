/**
 * Large reads leave the event loop (_fd_cache.ts): their descriptor stays
 * open while they run, and they return what the file held when they were
 * asked, before any change asked after them.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { asyncReadBytesMin, FdCache } from "./_fd_cache.ts";
import { LocalEngine } from "./local_engine.ts";

const MiB = 1024 * 1024;
const objectX = `${"0".repeat(31)}1.1.0`;

function filled(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value);
}

Deno.test("FdCache.read(): a descriptor closed while a large read runs changes nothing for it", async () => {
  // What the cache counts on from the runtime (_fd_cache.ts): without it, a read still on the
  // thread pool when its descriptor is closed fails, or reads the next file given that number.
  const dir = await Deno.makeTempDir();
  try {
    const files = new FdCache(1);
    const paths = Array.from({ length: 8 }, (_, i) => `${dir}/f${i}`);
    paths.forEach((path, i) => fs.writeFileSync(path, filled(MiB, i + 1)));
    const buffers = Array.from({ length: 32 }, () => new Uint8Array(MiB));
    for (let round = 0; round < 25; round++) {
      const reads = buffers.map(async (into, n) => {
        const i = n % paths.length;
        into.fill(0);
        return { i, into, got: await files.read(paths[i], into, 0, { writable: false }) };
      });
      // Each open evicts the descriptor before it (capacity 1), and the freed numbers go to the
      // next files opened, while the reads asked above are still under way.
      for (const path of [...paths].reverse()) files.get(path, { writable: true, create: false });
      files.forget(paths[0]);
      for (const { i, got, into } of await Promise.all(reads)) {
        assert.equal(got, MiB);
        assert.ok(into.every((byte) => byte === i + 1), `round ${round}: file ${i} read whole`);
      }
    }
    files.closeAll();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalEngine: a large read returns the object as it was asked; changes after it wait, in order", async () => {
  assert.ok(MiB >= asyncReadBytesMin);
  const dir = await Deno.makeTempDir();
  const engine = await LocalEngine.open({ dir });
  try {
    for (let round = 0; round < 20; round++) {
      await engine.writeObject(objectX, 0, filled(4 * MiB, 1), { truncate: true });
      const before = new Uint8Array(4 * MiB);
      const after = new Uint8Array(4 * MiB);
      const small = new Uint8Array(4096);
      const readBefore = engine.readObject(objectX, { offset: 0, length: 4 * MiB }, before);
      const write2 = engine.writeObject(objectX, 0, filled(4 * MiB, 2));
      const write3 = engine.writeObject(objectX, MiB, filled(MiB, 3));
      const readAfter = engine.readObject(objectX, { offset: 0, length: 4 * MiB }, after);
      const readSmall = engine.readObject(objectX, { offset: MiB, length: 4096 }, small);
      // Asked after reads that wait for the writes above: it waits for them too.
      const write5 = engine.writeObject(objectX, 0, filled(4 * MiB, 5));
      await Promise.all([readBefore, write2, write3, readAfter, readSmall, write5]);
      assert.ok(before.every((byte) => byte === 1), `round ${round}: the read before the writes`);
      assert.ok(after.subarray(0, MiB).every((byte) => byte === 2), `round ${round}: after`);
      assert.ok(after.subarray(MiB, 2 * MiB).every((byte) => byte === 3), `round ${round}: order`);
      assert.ok(after.subarray(2 * MiB).every((byte) => byte === 2));
      assert.ok(small.every((byte) => byte === 3), `round ${round}: a small read after them`);
    }
    // A delete asked after a write that waits for a read is not undone by that write.
    const into = new Uint8Array(4 * MiB);
    const read = engine.readObject(objectX, { offset: 0, length: 4 * MiB }, into);
    const write = engine.writeObject(objectX, 0, filled(MiB, 4));
    const deleted = engine.deleteObject(objectX);
    await Promise.all([read, write, deleted]);
    assert.equal(await engine.objectSize(objectX), 0);
  } finally {
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalEngine: a direct write runs off the event loop; what is asked after it waits, in order", async () => {
  // A replica's large changes go around the page cache on a worker thread (_direct_writes.ts):
  // a read asked after one sees it, a change asked after it lands after it, a delete stays.
  const dir = await Deno.makeTempDir();
  const engine = await LocalEngine.open({ dir });
  try {
    for (let round = 0; round < 20; round++) {
      await engine.writeObject(objectX, 0, filled(4 * MiB, 1), { truncate: true });
      const after = new Uint8Array(4 * MiB);
      const small = new Uint8Array(4096);
      const write2 = engine.writeObject(objectX, 0, filled(4 * MiB, 2), { direct: true });
      const write3 = engine.writeObject(objectX, MiB, filled(4096, 3));
      const readAfter = engine.readObject(objectX, { offset: 0, length: 4 * MiB }, after);
      const write4 = engine.writeObject(objectX, 2 * MiB, filled(MiB, 4), { direct: true });
      const readSmall = engine.readObject(objectX, { offset: 2 * MiB, length: 4096 }, small);
      await Promise.all([write2, write3, readAfter, write4, readSmall]);
      assert.ok(after.subarray(0, MiB).every((byte) => byte === 2), `round ${round}: the write`);
      assert.ok(after.subarray(MiB, MiB + 4096).every((byte) => byte === 3), `round ${round}: 3`);
      assert.ok(after.subarray(MiB + 4096).every((byte) => byte === 2), `round ${round}: order`);
      assert.ok(small.every((byte) => byte === 4), `round ${round}: a read after the second`);
      const whole = new Uint8Array(4 * MiB);
      await engine.readObject(objectX, { offset: 0, length: 4 * MiB }, whole);
      assert.ok(whole.subarray(2 * MiB, 3 * MiB).every((byte) => byte === 4));
      assert.ok(whole.subarray(MiB, MiB + 4096).every((byte) => byte === 3));
    }
    const write = engine.writeObject(objectX, 0, filled(MiB, 5), { direct: true });
    const deleted = engine.deleteObject(objectX);
    await Promise.all([write, deleted]);
    assert.equal(await engine.objectSize(objectX), 0, "a delete asked after a direct write");
  } finally {
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});
