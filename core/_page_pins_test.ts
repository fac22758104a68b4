/**
 * Goal: a map page stored by an operation that failed is stored again before a
 * record names it. A collection elsewhere that could not ask this node for its
 * pins (it saw the node gone) may have swept it meanwhile (seed 1429634 of the
 * data-path simulation with joins and leaves: a snapshot stored a page and
 * failed to flush; the next flush wrote a record naming the swept page, and
 * every later read of the volume failed). Method: a store whose engine fails
 * one flush on demand; the sweep is a deleteBlock of the pages that operation
 * stored, as the remote collection did; then the volume is flushed, and read
 * through a store opened afresh on the same directory.
 */
import assert from "node:assert/strict";
import { patternBytes, storeWithHooks, testBlockSize as B } from "./_test_store.ts";

interface Faults {
  failFlush: boolean;
  stored: string[];
}

function faultyStore(dir: string, faults: Faults) {
  return storeWithHooks(dir, {
    putBlock: (engine, hash: string, data: Uint8Array) => {
      faults.stored.push(hash);
      return engine.putBlock(hash, data);
    },
    flush: (engine) => {
      if (!faults.failFlush) return engine.flush();
      faults.failFlush = false;
      return Promise.reject(new Error("the replicas did not answer"));
    },
  });
}

Deno.test("a page stored by a failed snapshot is stored again before the next flush names it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-pins-" });
  const faults: Faults = { failFlush: false, stored: [] };
  let store = await faultyStore(dir, faults);
  try {
    await store.createVolume({ name: "v", size: 8 * B });
    const volume = await store.openVolume("v");
    const written = patternBytes(3 * B, 7);
    await volume.writeAt(2 * B, written);
    faults.stored = [];
    faults.failFlush = true;
    await assert.rejects(store.createSnapshot("v", "s"), /did not answer/);
    const pages = [...faults.stored];
    assert.ok(pages.length > 0, "the snapshot stored the map's pages before its flush failed");
    // A collection that did not hear this node's pins sweeps them.
    for (const page of pages) await store.engine.deleteBlock(page);
    await volume.flush();
    await store.close();
    store = await faultyStore(dir, faults);
    const again = await store.openVolume("v");
    const expected = new Uint8Array(8 * B);
    expected.set(written, 2 * B);
    assert.deepEqual(await again.readAt({ offset: 0, length: 8 * B }), expected);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
