import assert from "node:assert/strict";
import { BlockMap, objectName } from "./block_map.ts";
import { CorruptionError } from "./errors.ts";

const hash = "ab".repeat(32);
const uid = "0123456789abcdef0123456789abcdef";

Deno.test("BlockMap encodes and decodes every kind of entry", () => {
  const map = new BlockMap({ sizeBytes: 3 * 4096 + 100, blockSize: 4096 });
  assert.equal(map.count, 4);
  assert.equal(map.spanBytes(3), 100);
  map.set(1, { kind: "block", hash });
  map.set(2, { kind: "object", name: objectName(uid, 7, 2) });
  const decoded = BlockMap.decode(map.encode());
  assert.ok(decoded.equals(map));
  assert.deepEqual(decoded.get(0), { kind: "zero" });
  assert.deepEqual(decoded.get(1), { kind: "block", hash });
  assert.deepEqual(decoded.get(2), { kind: "object", name: `${uid}.7.2` });
  assert.deepEqual(decoded.references(), {
    blocks: new Set([hash]),
    objects: new Set([`${uid}.7.2`]),
  });
});

Deno.test("BlockMap.clone() is independent of its source", () => {
  const map = new BlockMap({ sizeBytes: 8192, blockSize: 4096 });
  const copy = map.clone();
  copy.set(0, { kind: "block", hash });
  assert.deepEqual(map.get(0), { kind: "zero" });
  assert.ok(!copy.equals(map));
});

Deno.test("BlockMap.decode() rejects truncated and malformed bytes", () => {
  const bytes = new BlockMap({ sizeBytes: 8192, blockSize: 4096 }).encode();
  assert.throws(() => BlockMap.decode(bytes.subarray(0, bytes.length - 1)), CorruptionError);
  assert.throws(() => BlockMap.decode(new Uint8Array(10)), CorruptionError);
  const badKind = bytes.slice();
  badKind[20] = 9;
  assert.throws(() => BlockMap.decode(badKind), CorruptionError);
  const badCount = bytes.slice();
  badCount[7] = 5;
  assert.throws(() => BlockMap.decode(badCount), CorruptionError);
});
