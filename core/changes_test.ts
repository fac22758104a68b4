/**
 * Goal: the changes since a snapshot are exactly the entries that name
 * something else, found the same way by the in-memory diff (live volumes) and
 * the stored one (two snapshots), across resizes, and listed as merged byte
 * extents bounded in number.
 * Method: maps built entry by entry, stored in a real LocalEngine.
 */
import assert from "node:assert/strict";
import { BlockMap, objectName } from "./block_map.ts";
import { changeExtents, mergeChanged } from "./changes.ts";
import { LocalEngine } from "./local_engine.ts";
import { volumeSizeBytesMax } from "./limits.ts";
import { diffMaps, encodeMapRoot, enginePages, loadMap, storeMapPages } from "./map_store.ts";

const MiB = 1024 * 1024;
const uid = "0123456789abcdef0123456789abcdef";
const hashOf = (n: number) => n.toString(16).padStart(64, "0");

async function stored(engine: LocalEngine, map: BlockMap): Promise<Uint8Array> {
  await storeMapPages(engine, map);
  await engine.flush();
  return encodeMapRoot(map);
}

async function collect(indexes: AsyncIterable<number> | Iterable<number>): Promise<number[]> {
  const out: number[] = [];
  for await (const index of indexes) out.push(index);
  return out;
}

Deno.test("changedSince() and diffMaps() find exactly the entries that name something else", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-changes-" });
  const engine = await LocalEngine.open({ dir });
  try {
    const base = new BlockMap({ sizeBytes: volumeSizeBytesMax, blockSize: 4 * MiB });
    for (let i = 0; i < 20_000; i += 3) base.set(i * 7, { kind: "block", hash: hashOf(i + 1) });
    base.set(9_000_000, { kind: "object", name: objectName(uid, 1, 9_000_000) });
    const baseRoot = await stored(engine, base);
    const live = base.clone();
    live.set(0, { kind: "block", hash: hashOf(1) }); // the same block again: no change
    live.set(21, { kind: "zero" }); // trimmed
    live.set(22, { kind: "object", name: objectName(uid, 2, 22) }); // written where zero
    live.set(9_000_000, { kind: "object", name: objectName(uid, 2, 9_000_000) }); // copied up
    live.set(16 * 1024 * 1024 - 1, { kind: "block", hash: hashOf(5) }); // the last entry
    const expected = [21, 22, 9_000_000, 16 * 1024 * 1024 - 1];
    assert.deepEqual(await collect(live.changedSince(base)), expected, "shared pages");
    // A snapshot loaded from its record shares no page object with the live map.
    const loaded = await loadMap(baseRoot, enginePages(engine));
    assert.deepEqual(await collect(live.changedSince(loaded)), expected, "loaded pages");
    const liveRoot = await stored(engine, live);
    assert.deepEqual(await collect(diffMaps(baseRoot, liveRoot, enginePages(engine))), expected);
    assert.deepEqual(await collect(live.changedSince(live.clone())), []);
    assert.ok(live.differsAt(base, 21) && !live.differsAt(base, 0) && !live.differsAt(base, 1));
  } finally {
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("changedSince() across a resize counts data past the old end, never past the new one", async () => {
  const base = new BlockMap({ sizeBytes: 8 * 4096, blockSize: 4096 });
  base.set(1, { kind: "block", hash: hashOf(1) });
  base.set(7, { kind: "block", hash: hashOf(7) });
  const grown = base.resized(12 * 4096);
  grown.set(9, { kind: "block", hash: hashOf(9) });
  assert.deepEqual(
    await collect(grown.changedSince(base)),
    [9],
    "zeros past the old end are no change",
  );
  const shrunk = base.resized(4 * 4096);
  assert.deepEqual(await collect(shrunk.changedSince(base)), []);
  shrunk.set(1, { kind: "zero" });
  assert.deepEqual(await collect(shrunk.changedSince(base)), [1]);
  const other = new BlockMap({ sizeBytes: 8 * 8192, blockSize: 8192 });
  assert.throws(() => [...other.changedSince(base)], RangeError);
});

Deno.test("changeExtents() covers a range in runs; mergeChanged() merges blocks and is bounded", async () => {
  const base = new BlockMap({ sizeBytes: 10 * 4096 + 512, blockSize: 4096 });
  const map = base.clone();
  for (const index of [2, 3, 6, 10]) map.set(index, { kind: "block", hash: hashOf(index) });
  assert.deepEqual(changeExtents(base, map, { offset: 4096 + 100, length: 6 * 4096 }), [
    { offset: 4196, length: 3996, changed: false },
    { offset: 8192, length: 8192, changed: true },
    { offset: 16384, length: 8192, changed: false },
    { offset: 24576, length: 4096, changed: true },
    { offset: 28672, length: 100, changed: false },
  ]);
  const shape = { sizeBytes: map.sizeBytes, blockSize: map.blockSize };
  assert.deepEqual(await mergeChanged(map.changedSince(base), shape, 3), [
    { offset: 8192, length: 8192 },
    { offset: 24576, length: 4096 },
    { offset: 40960, length: 512 },
  ]);
  await assert.rejects(() => mergeChanged(map.changedSince(base), shape, 2), RangeError);
});
