import assert from "node:assert/strict";
import { chunked, patternBytes, storeWithHooks, testBlockSize as B } from "./_test_store.ts";

/**
 * A store whose engine runs `afterPut` after every block it stores: a
 * collection can then run at the worst moment of a flatten, between a block's
 * store and the record that names it.
 */
function storeWithHook(dir: string, afterPut: { run: () => Promise<void> }) {
  return storeWithHooks(dir, {
    putBlock: async (engine, hash: string, data: Uint8Array) => {
      const stored = await engine.putBlock(hash, data);
      await afterPut.run();
      return stored;
    },
  });
}

Deno.test("flatten keeps its new blocks from a collection that runs before its record names them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-core-" });
  const afterPut = { run: () => Promise.resolve() };
  const store = await storeWithHook(dir, afterPut);
  try {
    const image = patternBytes(4 * B, 1);
    await store.uploadImage("img", chunked(image));
    await store.createVolume({ name: "v", image: "img" });
    await (await store.openVolume("v")).writeAt(B / 2, patternBytes(2 * B, 2)); // entries 0..2
    await store.createSnapshot("v", "s");
    await store.createVolume({ name: "c", snapshot: "v@s" });
    const expected = image.slice();
    expected.set(patternBytes(2 * B, 2), B / 2);

    let collections = 0;
    afterPut.run = async () => {
      collections++;
      await store.collectGarbage();
    };
    const flattened = await store.flattenVolume("c");
    afterPut.run = () => Promise.resolve();
    assert.equal(flattened.flattenedBlocks, 3);
    assert.equal(collections, 4, "a collection ran after each block and the map page stored");
    assert.deepEqual(flattened.origin, {
      kind: "flattened",
      from: { kind: "snapshot", volume: "v", snapshot: "s" },
    });

    await store.deleteVolume("v", { cascade: true });
    await store.deleteImage("img");
    const collected = await store.collectGarbage();
    assert.equal(collected.deletedObjects, 3, "the objects of v the clone named");
    const clone = await store.openVolume("c");
    assert.deepEqual(await clone.readAt({ offset: 0, length: image.length }), expected);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rollback makes the objects written since the snapshot garbage, and keeps the snapshot's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-core-" });
  const store = await storeWithHook(dir, { run: () => Promise.resolve() });
  try {
    await store.createVolume({ name: "v", size: 4 * B });
    const volume = await store.openVolume("v");
    await volume.writeAt(0, patternBytes(2 * B, 3));
    await store.createSnapshot("v", "s");
    await volume.writeAt(B, patternBytes(2 * B, 4)); // entry 1 copied up, entry 2 new
    await volume.resize(8 * B);
    await volume.writeAt(7 * B, patternBytes(B, 5));
    const rolled = await store.rollbackVolume("v", "s");
    assert.equal(rolled.size, 4 * B);
    assert.equal(volume.sizeBytes, 4 * B);
    const expected = new Uint8Array(4 * B);
    expected.set(patternBytes(2 * B, 3));
    assert.deepEqual(await volume.readAt({ offset: 0, length: 4 * B }), expected);
    const collected = await store.collectGarbage();
    assert.equal(collected.deletedObjects, 3, "entries 1, 2 and 7 written since");
    await volume.writeAt(0, patternBytes(100, 6)); // copied up: the snapshot keeps its bytes
    const snapshot = await store.openSnapshot("v", "s");
    assert.deepEqual(await snapshot.readAt({ offset: 0, length: 4 * B }), expected);
    await assert.rejects(store.rollbackVolume("v", "none"), /has no snapshot "none"/);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
