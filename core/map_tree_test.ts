/**
 * Goal: a map tree costs what was written, not the map's size: an empty 64 TiB
 * map is a root alone; a write stores the pages on one path; a tree opened from
 * a root shares every unchanged page with it; a diff of two roots reads only
 * the pages that differ; a damaged page is refused, not guessed at.
 * Method: trees over an in-memory page store that counts loads and stores.
 */
import assert from "node:assert/strict";
import { CorruptionError } from "./errors.ts";
import { mapEntriesMax } from "./limits.ts";
import {
  diffTrees,
  emptyRoot,
  MapTree,
  pageEntries,
  type PageStore,
  treeDepth,
} from "./map_tree.ts";

class MemoryPages implements PageStore {
  pages = new Map<string, Uint8Array>();
  loads = 0;
  stores = 0;
  load(id: string): Promise<Uint8Array> {
    this.loads++;
    const bytes = this.pages.get(id);
    if (bytes === undefined) return Promise.reject(new Error(`no page ${id}`));
    return Promise.resolve(bytes);
  }
  store(id: string, bytes: Uint8Array): Promise<void> {
    this.stores++;
    this.pages.set(id, bytes.slice());
    return Promise.resolve();
  }
}

const hash = (n: number) => n.toString(16).padStart(64, "0");
const block = (n: number) => ({ kind: "block" as const, hash: hash(n) });
const last = mapEntriesMax - 1; // 64 TiB at 4 MiB blocks

Deno.test("an empty 64 TiB map is its root alone; three writes store four small pages", async () => {
  assert.equal(treeDepth(mapEntriesMax), 2);
  assert.equal(treeDepth(pageEntries), 1);
  const store = new MemoryPages();
  const tree = new MapTree(emptyRoot(mapEntriesMax), store);
  assert.deepEqual(await tree.get(last), { kind: "zero" });
  await tree.set(12345, { kind: "zero" }); // zero where nothing was written: nothing to do
  assert.deepEqual(await tree.flush(), { entries: mapEntriesMax, depth: 2, top: null });
  assert.equal(store.stores, 0);

  await tree.set(0, block(1));
  await tree.set(mapEntriesMax / 2, { kind: "object", name: `${"a".repeat(32)}.3.7` });
  await tree.set(last, block(2));
  const root = await tree.flush();
  assert.equal(store.stores, 4, "one inner page and three leaves");
  const bytes = [...store.pages.values()].reduce((sum, page) => sum + page.length, 0);
  assert.ok(bytes < 300, `${bytes} bytes of pages for three entries of 16 M`);

  const reopened = new MapTree(root, new MemoryPages());
  await assert.rejects(reopened.get(0), /no page/, "pages come from the store");
  const again = new MapTree(root, store);
  assert.deepEqual(await again.get(0), block(1));
  assert.deepEqual(await again.get(mapEntriesMax / 2), {
    kind: "object",
    name: `${"a".repeat(32)}.3.7`,
  });
  assert.deepEqual(await again.get(last), block(2));
  assert.deepEqual(await again.get(1), { kind: "zero" });
});

Deno.test("a tree opened from a root shares its pages: a write stores only its path", async () => {
  const store = new MemoryPages();
  const base = new MapTree(emptyRoot(mapEntriesMax), store);
  for (let i = 0; i < 20; i++) await base.set(i * 100_003, block(i + 1));
  const snapshot = await base.flush();
  const stored = store.stores;

  const clone = new MapTree(snapshot, store);
  await clone.set(500_000, block(99));
  const cloneRoot = await clone.flush();
  assert.equal(store.stores - stored, 2, "one leaf and the inner page above it");
  assert.notEqual(cloneRoot.top, snapshot.top);
  assert.deepEqual(await new MapTree(snapshot, store).get(500_000), { kind: "zero" });
  assert.deepEqual(await new MapTree(cloneRoot, store).get(500_000), block(99));
  assert.deepEqual(await new MapTree(cloneRoot, store).get(100_003), block(2));

  // Unchanged since the last flush: nothing stored, same root.
  assert.deepEqual(await clone.flush(), cloneRoot);
  assert.equal(store.stores - stored, 2);

  // Zeroing what was written takes the pages away again.
  await clone.set(500_000, { kind: "zero" });
  assert.equal((await clone.flush()).top, snapshot.top, "same entries, same pages");
});

Deno.test("a diff reads only the pages that differ", async () => {
  const store = new MemoryPages();
  const tree = new MapTree(emptyRoot(mapEntriesMax), store);
  for (let i = 0; i < 64; i++) await tree.set(i * pageEntries * 7, block(i + 1));
  const a = await tree.flush();
  await tree.set(3 * pageEntries * 7, block(1000));
  await tree.set(3 * pageEntries * 7 + 1, block(1001));
  await tree.set(last, block(1002));
  const b = await tree.flush();

  store.loads = 0;
  const same = [];
  for await (const index of diffTrees(a, a, store)) same.push(index);
  assert.deepEqual(same, []);
  assert.equal(store.loads, 0, "equal roots: no page read");

  const changed = [];
  for await (const index of diffTrees(a, b, store)) changed.push(index);
  assert.deepEqual(changed, [3 * pageEntries * 7, 3 * pageEntries * 7 + 1, last]);
  assert.equal(store.loads, 2 + 2 + 1, "two tops, two versions of one leaf, one new leaf");
});

Deno.test("a damaged page is refused", async () => {
  const store = new MemoryPages();
  const tree = new MapTree(emptyRoot(pageEntries * 3), store);
  await tree.set(5, block(5));
  const root = await tree.flush();
  const [id, bytes] = [...store.pages].find(([id]) => id !== root.top)!;
  bytes[bytes.length - 1] ^= 1;
  await assert.rejects(new MapTree(root, store).get(5), CorruptionError);
  await assert.rejects(
    async () => {
      for await (const _ of diffTrees(emptyRoot(pageEntries * 3), root, store)) { /* drain */ }
    },
    CorruptionError,
    "a diff checks the pages it reads too",
  );
  store.pages.set(id, bytes.subarray(0, 5));
  await assert.rejects(new MapTree(root, store).get(5), CorruptionError);
  assert.throws(() => new MapTree({ ...root, depth: 3 }, store), /depth/);
});
