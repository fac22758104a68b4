/**
 * The engine contract: one suite that every Engine implementation passes (the
 * local engine now, the cluster ring and object stores later), as hono's routers
 * share one case file.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Engine } from "./engine.ts";
import { VersionMismatchError } from "./errors.ts";

/** How the suite gets engines: a fresh one, and the same storage reopened. */
export interface EngineFactory {
  /** A new, empty engine. */
  create(): Promise<Engine>;
  /** Closes `engine` and opens its storage again (a restart). */
  reopen(engine: Engine): Promise<Engine>;
  /** Removes whatever create() made. */
  destroy(engine: Engine): Promise<void>;
}

const objectX = `${"0".repeat(31)}1.1.0`;

function bytes(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed * 7) & 0xff);
}

/** A block's real name: engines that move blocks between nodes verify it. */
function nameOf(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Registers the contract's tests for one engine implementation. */
export function engineContract(label: string, factory: EngineFactory): void {
  const test = (name: string, fn: (engine: Engine) => Promise<Engine | void>) =>
    Deno.test(`${label}: ${name}`, async () => {
      let engine = await factory.create();
      try {
        engine = (await fn(engine)) ?? engine;
      } finally {
        await factory.destroy(engine);
      }
    });

  test("putBlock() stores once and reports whether the block was new", async (engine) => {
    const hashA = nameOf(bytes(1000, 1)), hashB = nameOf(bytes(10, 2));
    assert.equal(await engine.hasBlock(hashA), false);
    assert.equal(await engine.putBlock(hashA, bytes(1000, 1)), true);
    assert.equal(await engine.putBlock(hashA, bytes(1000, 1)), false);
    assert.equal(await engine.hasBlock(hashA), true);
    const [first, second] = await Promise.all([
      engine.putBlock(hashB, bytes(10, 2)),
      engine.putBlock(hashB, bytes(10, 2)),
    ]);
    assert.equal(Number(first) + Number(second), 1, "concurrent puts: exactly one is new");
    const names = [];
    for await (const name of engine.listBlocks()) names.push(name);
    assert.deepEqual(names.sort(), [hashA, hashB].sort());
  });

  test("readBlock() returns any range of a stored block", async (engine) => {
    const data = bytes(5000, 3);
    const hashA = nameOf(data);
    await engine.putBlock(hashA, data);
    const into = new Uint8Array(100);
    await engine.readBlock(hashA, { offset: 4900, length: 100 }, into);
    assert.deepEqual(into, data.subarray(4900));
    await engine.deleteBlock(hashA);
    assert.equal(await engine.hasBlock(hashA), false);
    await engine.deleteBlock(hashA);
  });

  test("readObject() returns zeros where nothing was written", async (engine) => {
    const into = new Uint8Array(64).fill(9);
    await engine.readObject(objectX, { offset: 0, length: 64 }, into);
    assert.deepEqual(into, new Uint8Array(64));
    await engine.writeObject(objectX, 100, bytes(50, 4));
    const read = new Uint8Array(200).fill(9);
    await engine.readObject(objectX, { offset: 0, length: 200 }, read);
    assert.deepEqual(read.subarray(0, 100), new Uint8Array(100));
    assert.deepEqual(read.subarray(100, 150), bytes(50, 4));
    assert.deepEqual(read.subarray(150), new Uint8Array(50));
  });

  test("writeObject() overwrites in place", async (engine) => {
    await engine.writeObject(objectX, 0, bytes(100, 5));
    await engine.writeObject(objectX, 10, bytes(10, 6));
    const read = new Uint8Array(100);
    await engine.readObject(objectX, { offset: 0, length: 100 }, read);
    const expected = bytes(100, 5);
    expected.set(bytes(10, 6), 10);
    assert.deepEqual(read, expected);
    const names = [];
    for await (const name of engine.listObjects()) names.push(name);
    assert.deepEqual(names, [objectX]);
    await engine.deleteObject(objectX);
    await engine.readObject(objectX, { offset: 0, length: 100 }, read);
    assert.deepEqual(read, new Uint8Array(100));
  });

  test("writeObject() with truncate discards what the object held", async (engine) => {
    await engine.writeObject(objectX, 0, bytes(300, 1));
    await engine.writeObject(objectX, 100, bytes(10, 2), { truncate: true });
    const read = new Uint8Array(300).fill(9);
    await engine.readObject(objectX, { offset: 0, length: 300 }, read);
    const expected = new Uint8Array(300);
    expected.set(bytes(10, 2), 100);
    assert.deepEqual(read, expected);
  });

  test("putMeta() is a compare-and-set on versions", async (engine) => {
    assert.equal(await engine.getMeta("volume/a"), null);
    assert.equal(await engine.putMeta("volume/a", bytes(3, 1), 0), 1);
    await assert.rejects(engine.putMeta("volume/a", bytes(3, 2), 0), VersionMismatchError);
    assert.equal(await engine.putMeta("volume/a", bytes(3, 3), 1), 2);
    assert.deepEqual(await engine.getMeta("volume/a"), { version: 2, value: bytes(3, 3) });
    await assert.rejects(engine.deleteMeta("volume/a", 1), VersionMismatchError);
    await engine.deleteMeta("volume/a", 2);
    assert.equal(await engine.getMeta("volume/a"), null);
  });

  test("putMeta() lets exactly one of many concurrent writers win", async (engine) => {
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => engine.putMeta("image/x", bytes(8, i), 0)),
    );
    assert.equal(results.filter((result) => result.status === "fulfilled").length, 1);
  });

  test("listMeta() returns the keys under a prefix, sorted", async (engine) => {
    for (const key of ["snapshot/v@b", "snapshot/v@a", "snapshot/w@a", "volume/v"]) {
      await engine.putMeta(key, bytes(1, 0), 0);
    }
    assert.deepEqual(await engine.listMeta("snapshot/v@"), ["snapshot/v@a", "snapshot/v@b"]);
    assert.deepEqual(await engine.listMeta("image/"), []);
  });

  test("flushed blocks, objects and metadata survive a reopen", async (engine) => {
    const hashA = nameOf(bytes(4096, 7));
    await engine.putBlock(hashA, bytes(4096, 7));
    await engine.writeObject(objectX, 4096, bytes(4096, 8));
    await engine.putMeta("image/kept", bytes(16, 9), 0);
    await engine.flush();
    const reopened = await factory.reopen(engine);
    const block = new Uint8Array(4096);
    await reopened.readBlock(hashA, { offset: 0, length: 4096 }, block);
    assert.deepEqual(block, bytes(4096, 7));
    const object = new Uint8Array(4096);
    await reopened.readObject(objectX, { offset: 4096, length: 4096 }, object);
    assert.deepEqual(object, bytes(4096, 8));
    assert.deepEqual(await reopened.getMeta("image/kept"), { version: 1, value: bytes(16, 9) });
    return reopened;
  });
}
