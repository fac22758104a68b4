import assert from "node:assert/strict";
import { ConflictError, NotFoundError, TruncatedError } from "./errors.ts";
import {
  chunked,
  destroyTestStore,
  openTestStore,
  patternBytes,
  testBlockSize as B,
} from "./_test_store.ts";

/** An image of 6 blocks and a short tail (two sectors): A, B, zero, A, C, zero, tail. */
function sampleImage(): Uint8Array {
  const a = patternBytes(B, 1), b = patternBytes(B, 2), c = patternBytes(B, 3);
  const image = new Uint8Array(6 * B + 1024);
  image.set(a, 0);
  image.set(b, B);
  image.set(a, 3 * B);
  image.set(c, 4 * B);
  image.set(patternBytes(1024, 4), 6 * B);
  return image;
}

Deno.test("uploadImage() stores each distinct block once and no zero block", async () => {
  const store = await openTestStore();
  try {
    const image = sampleImage();
    const first = await store.uploadImage("one", chunked(image), { expectedBytes: image.length });
    assert.equal(first.blocks, 7);
    assert.equal(first.zeroBlocks, 2);
    assert.equal(first.newBlocks, 4); // A, B, C and the tail
    assert.equal(first.newBytes, 3 * B + 1024);
    const again = await store.uploadImage("two", chunked(image, 333), {});
    assert.equal(again.newBlocks, 0);
    assert.equal(again.newBytes, 0);
    const view = await store.openImage("two");
    assert.deepEqual(await view.readAt({ offset: 0, length: image.length }), image);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("uploadImage() of an existing name: same bytes succeed, others conflict", async () => {
  const store = await openTestStore();
  try {
    const image = sampleImage();
    assert.equal((await store.uploadImage("x", chunked(image))).created, true);
    assert.equal((await store.uploadImage("x", chunked(image))).created, false);
    await assert.rejects(store.uploadImage("x", chunked(patternBytes(5120, 9))), ConflictError);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("uploadImage() refuses a second concurrent upload of one name", async () => {
  const store = await openTestStore();
  try {
    const gate = Promise.withResolvers<void>();
    const slow = async function* () {
      yield patternBytes(1024, 1);
      await gate.promise;
      yield patternBytes(1024, 2);
    };
    const first = store.uploadImage("busy", slow());
    await assert.rejects(store.uploadImage("busy", chunked(sampleImage())), ConflictError);
    assert.equal(store.uploads()[0].name, "busy");
    gate.resolve();
    assert.equal((await first).size, 2048);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("uploadImage() of a body cut short leaves no image", async () => {
  const store = await openTestStore();
  try {
    const image = sampleImage();
    await assert.rejects(
      store.uploadImage("cut", chunked(image.subarray(0, 2 * B)), { expectedBytes: image.length }),
      TruncatedError,
    );
    const broken = async function* () {
      yield image.subarray(0, B + 5);
      throw new Error("connection reset");
    };
    await assert.rejects(store.uploadImage("cut", broken()), /connection reset/);
    assert.deepEqual(await store.listImages(), []);
    assert.deepEqual(store.uploads(), []);
    const gc = await store.collectGarbage();
    assert.equal(gc.liveBlocks, 0, "blocks of failed uploads are garbage");
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("a clone shares the image's blocks and copies up only what it writes", async () => {
  const store = await openTestStore();
  try {
    const image = sampleImage();
    await store.uploadImage("img", chunked(image));
    await store.createVolume({ name: "vm", image: "img" });
    const volume = await store.openVolume("vm");
    await volume.writeAt(B + 10, patternBytes(100, 7));
    const expected = image.slice();
    expected.set(patternBytes(100, 7), B + 10);
    assert.deepEqual(await volume.readAt({ offset: 0, length: image.length }), expected);
    const view = await store.openImage("img");
    assert.deepEqual(await view.readAt({ offset: 0, length: image.length }), image);
    const map = volume.mapSnapshot();
    assert.equal(map.get(1).kind, "object");
    assert.equal(map.get(0).kind, "block");
    assert.equal(map.get(2).kind, "zero");
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("a snapshot keeps its bytes while the volume and a clone of it change", async () => {
  const store = await openTestStore();
  try {
    await store.createVolume({ name: "v", size: 4 * B });
    const volume = await store.openVolume("v");
    await volume.writeAt(0, patternBytes(2 * B, 1));
    await store.createSnapshot("v", "s1");
    await volume.writeAt(100, patternBytes(50, 2)); // copies up the frozen object
    await store.createVolume({ name: "c", snapshot: "v@s1" });
    const clone = await store.openVolume("c");
    await clone.writeAt(B, patternBytes(B, 3));

    const snapshot = await store.openSnapshot("v", "s1");
    const frozen = new Uint8Array(4 * B);
    frozen.set(patternBytes(2 * B, 1));
    assert.deepEqual(await snapshot.readAt({ offset: 0, length: 4 * B }), frozen);
    const live = frozen.slice();
    live.set(patternBytes(50, 2), 100);
    assert.deepEqual(await volume.readAt({ offset: 0, length: 4 * B }), live);
    const cloned = frozen.slice();
    cloned.set(patternBytes(B, 3), B);
    assert.deepEqual(await clone.readAt({ offset: 0, length: 4 * B }), cloned);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("zeroAt() frees whole entries and zeroes partial ones", async () => {
  const store = await openTestStore();
  try {
    await store.createVolume({ name: "z", size: 3 * B });
    const volume = await store.openVolume("z");
    await volume.writeAt(0, patternBytes(3 * B, 5));
    await volume.zeroAt({ offset: B, length: B });
    await volume.trim({ offset: 2 * B + 10, length: 20 });
    assert.deepEqual(volume.extents({ offset: 0, length: 3 * B }).map((e) => e.zero), [
      false,
      true,
      false,
    ]);
    const expected = patternBytes(3 * B, 5);
    expected.fill(0, B, 2 * B);
    expected.fill(0, 2 * B + 10, 2 * B + 30);
    assert.deepEqual(await volume.readAt({ offset: 0, length: 3 * B }), expected);
    // A write after a trim must not resurrect the trimmed bytes.
    await volume.writeAt(B + 5, patternBytes(5, 6));
    const again = await volume.readAt({ offset: B, length: B });
    const fresh = new Uint8Array(B);
    fresh.set(patternBytes(5, 6), 5);
    assert.deepEqual(again, fresh);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("zeroAt() with keepAllocated writes zeros and leaves no hole", async () => {
  const store = await openTestStore();
  try {
    await store.createVolume({ name: "k", size: 2 * B });
    const volume = await store.openVolume("k");
    await volume.writeAt(0, patternBytes(2 * B, 3));
    assert.equal(volume.zeroIsFast({ offset: 0, length: B }), true, "a whole entry: map only");
    assert.equal(volume.zeroIsFast({ offset: 10, length: 100 }), false, "partial data: a write");
    assert.equal(volume.zeroIsFast({ offset: 0, length: B }, { keepAllocated: true }), false);
    await volume.zeroAt({ offset: 0, length: 2 * B }, { keepAllocated: true });
    assert.deepEqual(volume.extents({ offset: 0, length: 2 * B }), [
      { offset: 0, length: 2 * B, zero: false },
    ]);
    assert.deepEqual(await volume.readAt({ offset: 0, length: 2 * B }), new Uint8Array(2 * B));
    await volume.zeroAt({ offset: 0, length: B });
    assert.equal(volume.zeroIsFast({ offset: 5, length: 100 }), true, "partial, already zero");
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("concurrent writes to one shared block all land", async () => {
  const store = await openTestStore();
  try {
    await store.uploadImage("img", chunked(patternBytes(B, 1)));
    await store.createVolume({ name: "v", image: "img" });
    const volume = await store.openVolume("v");
    await Promise.all(
      Array.from({ length: 16 }, (_, i) => volume.writeAt(i * 100, patternBytes(100, 10 + i))),
    );
    const expected = patternBytes(B, 1);
    for (let i = 0; i < 16; i++) expected.set(patternBytes(100, 10 + i), i * 100);
    assert.deepEqual(await volume.readAt({ offset: 0, length: B }), expected);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("reads and writes outside a volume are refused with RangeError", async () => {
  const store = await openTestStore();
  try {
    await store.createVolume({ name: "v", size: B });
    const volume = await store.openVolume("v");
    await assert.rejects(volume.readAt({ offset: B - 1, length: 2 }), RangeError);
    await assert.rejects(volume.writeAt(B, new Uint8Array(1)), RangeError);
    await assert.rejects(volume.readAt({ offset: -1, length: 1 }), RangeError);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("deletions never break what shares their blocks, and GC frees the rest", async () => {
  const store = await openTestStore();
  try {
    const image = sampleImage();
    await store.uploadImage("img", chunked(image));
    await store.createVolume({ name: "v", image: "img" });
    const volume = await store.openVolume("v");
    await volume.writeAt(0, patternBytes(2 * B, 8)); // covers A (also at 3) and B (only at 1)
    await store.createSnapshot("v", "s");
    await store.createVolume({ name: "c", snapshot: "v@s" });
    await store.deleteImage("img");
    await assert.rejects(store.deleteVolume("v"), ConflictError);
    await store.deleteVolume("v", { cascade: true });
    await assert.rejects(store.openSnapshot("v", "s"), NotFoundError);
    const collected = await store.collectGarbage();
    // Block B lost its last reference, and so did the image's map page (pages are
    // blocks: the volume's own page replaced it at its first write).
    assert.equal(collected.deletedBlocks, 2, "block B and the image's page");
    assert.equal(collected.deletedObjects, 0, "the clone references the snapshot's objects");
    const expected = image.slice();
    expected.set(patternBytes(2 * B, 8), 0);
    const clone = await store.openVolume("c");
    assert.deepEqual(await clone.readAt({ offset: 0, length: image.length }), expected);
    await store.deleteVolume("c");
    const emptied = await store.collectGarbage();
    assert.deepEqual([emptied.liveBlocks, emptied.liveObjects], [0, 0]);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("flushed writes survive reopening the store", async () => {
  let store = await openTestStore();
  const dir = store.dir;
  try {
    await store.createVolume({ name: "p", size: 2 * B });
    const volume = await store.openVolume("p");
    await volume.writeAt(B - 50, patternBytes(100, 3), { fua: true });
    await store.createSnapshot("p", "s");
    await store.close();
    store = await openTestStore(dir);
    const reopened = await store.openVolume("p");
    assert.deepEqual(await reopened.readAt({ offset: B - 50, length: 100 }), patternBytes(100, 3));
    assert.equal((await store.listSnapshots("p")).length, 1);
  } finally {
    await destroyTestStore(store);
  }
});
