/**
 * Goal: a stored map is a small root naming content-addressed pages: it loads
 * back whole, a change stores only the pages it touched (and the inner page
 * above them), unchanged pages are shared between maps, a damaged or missing
 * page is refused rather than read as zeros, and maps written before pages
 * (whole in their record) still load.
 * Method: maps stored in a real LocalEngine on a temporary directory.
 */
import assert from "node:assert/strict";
import { BlockMap, objectName } from "./block_map.ts";
import { CorruptionError } from "./errors.ts";
import { LocalEngine } from "./local_engine.ts";
import { volumeSizeBytesMax } from "./limits.ts";
import {
  diffMaps,
  encodeMapRoot,
  enginePages,
  loadMap,
  mapRootBytes,
  type PageSource,
  storeMapPages,
} from "./map_store.ts";
import { refBytes } from "./_map_pages.ts";

const MiB = 1024 * 1024;
const uid = "0123456789abcdef0123456789abcdef";
const hashOf = (n: number) => n.toString(16).padStart(64, "0");

async function withEngine(body: (engine: LocalEngine) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-map-" });
  const engine = await LocalEngine.open({ dir });
  try {
    await body(engine);
  } finally {
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function blockCount(engine: LocalEngine): Promise<number> {
  let count = 0;
  for await (const _ of engine.listBlocks()) count++;
  return count;
}

async function save(engine: LocalEngine, map: BlockMap): Promise<Uint8Array> {
  await storeMapPages(engine, map);
  await engine.flush();
  return encodeMapRoot(map);
}

Deno.test("a 64 TiB map stores and loads back, at the cost of what was written", async () => {
  await withEngine(async (engine) => {
    const map = new BlockMap({ sizeBytes: volumeSizeBytesMax, blockSize: 4 * MiB });
    const empty = await save(engine, map);
    assert.equal(empty.length, mapRootBytes);
    assert.equal(await blockCount(engine), 0, "an empty map is its root alone");
    const last = map.count - 1, middle = map.count / 2;
    map.set(0, { kind: "block", hash: hashOf(1) });
    map.set(middle, { kind: "object", name: objectName(uid, 3, middle) });
    map.set(last, { kind: "block", hash: hashOf(2) });
    const root = await save(engine, map);
    assert.equal(await blockCount(engine), 4, "three leaves and the inner page");
    const loaded = await loadMap(root, enginePages(engine));
    assert.ok(loaded.equals(map));
    assert.deepEqual(loaded.get(last), { kind: "block", hash: hashOf(2) });
    assert.deepEqual(loaded.get(middle), { kind: "object", name: `${uid}.3.${middle}` });
    assert.deepEqual(loaded.get(1), { kind: "zero" });
    assert.equal(loaded.unstored().length, 0, "loaded pages are known stored");

    // A clone shares every page; a change in it stores one leaf and one inner page.
    const clone = loaded.clone();
    clone.set(last - 1, { kind: "block", hash: hashOf(3) });
    assert.equal(clone.unstored().length, 2);
    const cloneRoot = await save(engine, clone);
    assert.equal(await blockCount(engine), 6);
    const reloaded = await loadMap(cloneRoot, enginePages(engine));
    assert.deepEqual(reloaded.get(last - 1), { kind: "block", hash: hashOf(3) });
    assert.deepEqual(loaded.get(last - 1), { kind: "zero" }, "the source is unchanged");
  });
});

Deno.test("a map page that is damaged or missing is refused", async () => {
  await withEngine(async (engine) => {
    const map = new BlockMap({ sizeBytes: 64 * MiB, blockSize: 4 * MiB });
    map.set(3, { kind: "block", hash: hashOf(9) });
    const root = await save(engine, map);
    const id = map.seal()!.id;
    const length = map.seal()!.length;
    const wrong = new Uint8Array(length).fill(1);
    const tampered = { load: () => Promise.resolve(wrong) };
    await assert.rejects(() => loadMap(root, tampered), CorruptionError);
    await engine.deleteBlock(id);
    await assert.rejects(() => loadMap(root, enginePages(engine)));
    const badRoot = root.slice();
    badRoot[20] = 2; // a depth the size does not have
    await assert.rejects(() => loadMap(badRoot, enginePages(engine)), CorruptionError);
    await assert.rejects(() => loadMap(root.subarray(0, 30), enginePages(engine)), CorruptionError);
  });
});

Deno.test("a map written whole in its record (before pages) still loads", async () => {
  await withEngine(async (engine) => {
    // The former encoding: magic "ATMP", count, block size, size, kinds, references.
    const count = 5, blockSize = 4096;
    const bytes = new Uint8Array(20 + count * (1 + refBytes));
    const view = new DataView(bytes.buffer);
    view.setUint32(0, 0x41544d50);
    view.setUint32(4, count);
    view.setUint32(8, blockSize);
    view.setFloat64(12, count * blockSize);
    bytes[20 + 2] = 1; // entry 2: a block
    bytes.set(new Uint8Array(32).fill(0xab), 20 + count + 2 * refBytes);
    const map = await loadMap(bytes, enginePages(engine));
    assert.deepEqual(map.get(2), { kind: "block", hash: "ab".repeat(32) });
    assert.equal(map.allocated, 1);
    assert.equal(map.unstored().length, 1, "stored as a page at its next change");
    const bad = bytes.slice();
    bad[20] = 7;
    await assert.rejects(() => loadMap(bad, enginePages(engine)), CorruptionError);
  });
});

Deno.test("a diff of two stored maps reads only the pages that differ", async () => {
  await withEngine(async (engine) => {
    const map = new BlockMap({ sizeBytes: volumeSizeBytesMax, blockSize: 4 * MiB });
    const spread = [0, 5_000, 9_000_000, map.count - 1];
    for (const [i, index] of spread.entries()) {
      map.set(index, { kind: "block", hash: hashOf(i + 1) });
    }
    const before = await save(engine, map);
    const after = map.clone();
    after.set(9_000_001, { kind: "block", hash: hashOf(7) });
    after.set(5_000, { kind: "zero" });
    const afterRoot = await save(engine, after);
    let loads = 0;
    const counting: PageSource = {
      load: (id, length) => {
        loads++;
        return enginePages(engine).load(id, length);
      },
    };
    const changed: number[] = [];
    for await (const index of diffMaps(before, afterRoot, counting)) changed.push(index);
    assert.deepEqual(changed, [5_000, 9_000_001]);
    // Two inner pages and the two leaves that differ on each side: not the four leaves.
    assert.equal(loads, 2 + 2 + 1, "inner pages, the changed leaf twice, the emptied one once");
    const same: number[] = [];
    for await (const index of diffMaps(before, before, counting)) same.push(index);
    assert.deepEqual(same, []);
  });
});
