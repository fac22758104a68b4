/**
 * Goal: first writes into entries a volume does not own yet (zero entries of a
 * fresh volume, shared blocks of a clone) run side by side, as writes in place
 * do, and none of them loses another's bytes: not two writers of one entry, nor
 * copy-ups of different entries sharing a buffer.
 * Method: a store on real files whose engine counts the object writes in flight
 * (each held back a little, as a replicated write is); many writes at once, then
 * every byte read back against a model.
 */
import assert from "node:assert/strict";
import type { ByteRange, Engine } from "./engine.ts";
import { assertSameBytes } from "../tests/_files.ts";
import {
  chunked,
  openTestStore,
  patternBytes,
  storeWithHooks,
  testBlockSize as B,
} from "./_test_store.ts";

/** A store whose engine's writeObject waits `delayMs` and records how many ran at once. */
async function countingStore(dir: string, delayMs: number) {
  const seen = { inFlight: 0, most: 0 };
  const store = await storeWithHooks(dir, {
    writeObject: async (engine: Engine, ...args: never[]) => {
      const [name, offset, data, options] = args as unknown as Parameters<Engine["writeObject"]>;
      seen.most = Math.max(seen.most, ++seen.inFlight);
      try {
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        await engine.writeObject(name, offset, data, options);
      } finally {
        seen.inFlight--;
      }
    },
  });
  return { store, seen };
}

/** Writes of `length` bytes at `offsets`, all at once; returns what the volume should read. */
async function writeAll(
  volume: { writeAt(offset: number, data: Uint8Array): Promise<void> },
  start: Uint8Array,
  writes: ByteRange[],
): Promise<Uint8Array> {
  const expected = start.slice();
  await Promise.all(writes.map((range, i) => {
    const data = patternBytes(range.length, 100 + i);
    expected.set(data, range.offset);
    return volume.writeAt(range.offset, data);
  }));
  return expected;
}

Deno.test("first writes into distinct zero entries of a fresh volume run at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-copy-up-" });
  const { store, seen } = await countingStore(dir, 20);
  try {
    await store.createVolume({ name: "v", size: 8 * B });
    const volume = await store.openVolume("v");
    // One write into each of the eight entries, none owned yet.
    const writes = Array.from({ length: 8 }, (_, i) => ({ offset: i * B + 512, length: 4096 }));
    const expected = await writeAll(volume, new Uint8Array(8 * B), writes);
    assert.ok(seen.most >= 8, `at most ${seen.most} first writes ran at once, not 8`);
    assertSameBytes(await volume.readAt({ offset: 0, length: 8 * B }), expected, "the volume");
    await volume.flush();
    await store.close();
    const reopened = await openTestStore(dir);
    try {
      const again = await reopened.openVolume("v");
      assertSameBytes(
        await again.readAt({ offset: 0, length: 8 * B }),
        expected,
        "after a restart",
      );
    } finally {
      await reopened.close();
    }
  } finally {
    await store.close().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("concurrent writes into one fresh entry and copy-ups of a clone's blocks lose nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-copy-up-" });
  const { store } = await countingStore(dir, 5);
  try {
    // An image of distinct blocks, and a clone whose every entry is a shared block.
    const image = new Uint8Array(6 * B);
    for (let i = 0; i < 6; i++) image.set(patternBytes(B, 1 + i), i * B);
    await store.uploadImage("img", chunked(image));
    await store.createVolume({ name: "c", image: "img" });
    await store.createVolume({ name: "f", size: 2 * B });
    const clone = await store.openVolume("c");
    const fresh = await store.openVolume("f");

    // Several partial writes into each shared block at once (copy-ups reading
    // their block into a buffer while others do), some across two entries.
    const cloneWrites: ByteRange[] = [];
    for (let i = 0; i < 6; i++) {
      for (const at of [100, B / 2, B - 300]) cloneWrites.push({ offset: i * B + at, length: 200 });
    }
    cloneWrites.push({ offset: 2 * B - 1000, length: 3000 });
    // Into the fresh volume: writes to the same two entries, none overlapping.
    const freshWrites = Array.from(
      { length: 16 },
      (_, i) => ({ offset: i * (B / 8), length: 999 }),
    );

    const [cloneExpected, freshExpected] = await Promise.all([
      writeAll(clone, image, cloneWrites),
      writeAll(fresh, new Uint8Array(2 * B), freshWrites),
    ]);
    assertSameBytes(await clone.readAt({ offset: 0, length: 6 * B }), cloneExpected, "the clone");
    assertSameBytes(
      await fresh.readAt({ offset: 0, length: 2 * B }),
      freshExpected,
      "the fresh volume",
    );
    // The image is untouched by its clone's copy-ups.
    const view = await store.openImage("img");
    assertSameBytes(await view.readAt({ offset: 0, length: 6 * B }), image, "the image");
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
