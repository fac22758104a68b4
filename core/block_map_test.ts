/**
 * Goal: a map costs what was written, not its size: an empty 64 TiB map holds
 * no page, a copy shares every page until one side changes it, and entries of
 * every kind read back as set.
 */
import assert from "node:assert/strict";
import { BlockMap, objectName } from "./block_map.ts";
import { volumeSizeBytesMax } from "./limits.ts";

const hash = "ab".repeat(32);
const uid = "0123456789abcdef0123456789abcdef";
const MiB = 1024 * 1024;

Deno.test("BlockMap holds every kind of entry and lists what it references", () => {
  const map = new BlockMap({ sizeBytes: 3 * 4096 + 100, blockSize: 4096 });
  assert.equal(map.count, 4);
  assert.equal(map.spanBytes(3), 100);
  map.set(1, { kind: "block", hash });
  map.set(2, { kind: "object", name: objectName(uid, 7, 2) });
  assert.deepEqual(map.get(0), { kind: "zero" });
  assert.deepEqual(map.get(1), { kind: "block", hash });
  assert.deepEqual(map.get(2), { kind: "object", name: `${uid}.7.2` });
  assert.equal(map.allocated, 2);
  const { blocks, objects } = map.references();
  assert.deepEqual(objects, new Set([`${uid}.7.2`]));
  assert.ok(blocks.has(hash));
  // The map's one page is a block too (its name: the SHA-256 of its bytes).
  assert.equal(blocks.size, 2);
  assert.equal(map.unstored().length, 1);
});

Deno.test("BlockMap.clone() shares pages and stays independent of its source", () => {
  const map = new BlockMap({ sizeBytes: 64 * 1024 * MiB, blockSize: 4 * MiB });
  map.set(5, { kind: "block", hash });
  const copy = map.clone();
  assert.ok(copy.equals(map));
  copy.set(5, { kind: "zero" });
  copy.set(6, { kind: "block", hash });
  assert.deepEqual(map.get(5), { kind: "block", hash });
  assert.deepEqual(map.get(6), { kind: "zero" });
  assert.deepEqual(copy.get(5), { kind: "zero" });
  assert.ok(!copy.equals(map));
  map.set(6, { kind: "block", hash });
  map.set(5, { kind: "zero" });
  assert.ok(copy.equals(map), "equal entries make equal maps, whatever their history");
  assert.equal(map.seal()!.id, copy.seal()!.id, "and equal pages");
});

Deno.test("an empty 64 TiB map has no page; entries far apart make a page each", () => {
  const map = new BlockMap({ sizeBytes: volumeSizeBytesMax, blockSize: 4 * MiB });
  assert.equal(map.depth, 2);
  assert.equal(map.seal(), null);
  assert.equal(map.references().blocks.size, 0);
  map.set(0, { kind: "block", hash });
  map.set(map.count - 1, { kind: "block", hash });
  map.set(map.count / 2, { kind: "object", name: objectName(uid, 1, map.count / 2) });
  // Three leaves and the inner page naming them.
  assert.equal(map.unstored().length, 4);
  assert.equal(map.allocated, 3);
  map.set(0, { kind: "zero" });
  assert.equal(map.unstored().length, 3, "a page left with no entry is no page");
});

Deno.test("BlockMap.resized() keeps the entries inside the new size and shares their pages", () => {
  const map = new BlockMap({ sizeBytes: 40 * 4096, blockSize: 4096 });
  map.set(3, { kind: "block", hash });
  map.set(30, { kind: "block", hash });
  const grown = map.resized(4096 * 16 * 1024 * 1024); // the most entries a map may have
  assert.equal(grown.depth, 2);
  assert.deepEqual(grown.get(30), { kind: "block", hash });
  assert.deepEqual(grown.get(grown.count - 1), { kind: "zero" });
  assert.equal(grown.allocated, 2);
  const shrunk = map.resized(10 * 4096 + 512);
  assert.equal(shrunk.count, 11);
  assert.equal(shrunk.allocated, 1, "the entry past the new end is gone");
  const regrown = shrunk.resized(40 * 4096);
  assert.deepEqual(regrown.get(30), { kind: "zero" }, "and stays gone when it grows again");
  assert.deepEqual(map.get(30), { kind: "block", hash }, "the source is unchanged");
});
