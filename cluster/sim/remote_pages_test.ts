/**
 * Goal: a lease holder that holds no copy of an object it writes reads it
 * again from memory, and never from a page that is no longer the object's:
 * its own writes patch the pages, anything that parts its stamp from the
 * pages' (a failed change, the lease lost) drops them, and the bound holds.
 * A reader under a read view (a volume nobody writes) keeps the pages of the
 * copies it found on other members, and a new view never reads old pages.
 * Method: ReplicatedObjects over ObjectReplicas on memory disks behind links
 * that can be cut, counting the calls that reach the replicas.
 */
import assert from "node:assert/strict";
import { ReplicaQuorumError, ReplicatedObjects } from "../data/mod.ts";
import { remotePageBytes, RemotePages } from "../data/_remote_pages.ts";
import { uncachedReadBytes } from "../data/_object_reads.ts";
import { TestReplica } from "./_test_replica.ts";

const uid = "b".repeat(32);
const name = `${uid}.1.0`;
/** Sixteen pages: the size of a real object (4 MiB) at the real page size. */
const objectBytes = 16 * remotePageBytes;

/** A replica that counts the reads it serves. */
class CountingReplica extends TestReplica {
  reads = 0;
  override read(name: string, offset: number, length: number) {
    this.reads++;
    return super.read(name, offset, length);
  }
}

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff);
}

/**
 * A holder (no replica itself) with a cache of `pages` pages, and the object
 * written whole with pattern `seed` on two counting replicas.
 */
async function writtenElsewhere(pages: number, seed: number) {
  const replicas = [new CountingReplica("a"), new CountingReplica("b")];
  const reads = () => replicas[0].reads + replicas[1].reads;
  const writer = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => replicas,
    epochOf: () => 1,
    remotePagesBytes: pages * remotePageBytes,
  });
  const whole = pattern(objectBytes, seed);
  await writer.write(name, 0, whole, { truncate: true });
  return { replicas, reads, writer, whole };
}

Deno.test("a holder reads an object it holds no copy of from memory once it read it, and its writes stay in view", async () => {
  const { replicas, reads, writer, whole } = await writtenElsewhere(4, 1);
  const read = async (offset: number, length: number) => {
    const into = new Uint8Array(length);
    await writer.read(name, offset, into, { existing: true });
    return into;
  };
  assert.deepEqual(await read(5000, 4096), whole.subarray(5000, 9096));
  assert.equal(reads(), 1, "a miss fetches the pages around the range");
  assert.deepEqual(await read(100, 512), whole.subarray(100, 612));
  assert.deepEqual(await read(9000, 4096), whole.subarray(9000, 13096));
  assert.equal(reads(), 1, "reads within the fetched pages cost no call");

  // The holder's own write patches the page; the next read sees it without a call.
  const patch = pattern(1000, 9);
  await writer.write(name, 6000, patch, { existing: true });
  whole.set(patch, 6000);
  assert.deepEqual(await read(4096, 8192), whole.subarray(4096, 12288));
  assert.equal(reads(), 1);

  // A change that fails parts the stamps: the pages go, the next read asks a replica.
  for (const replica of replicas) replica.down = true;
  await assert.rejects(
    writer.write(name, 0, pattern(10, 3), { existing: true }),
    ReplicaQuorumError,
  );
  for (const replica of replicas) replica.down = false;
  const before = reads();
  assert.deepEqual(await read(0, 4096), whole.subarray(0, 4096));
  assert.ok(reads() > before, "the read went to a replica, not to pages of the old stamp");

  // The lease goes (another node writes the volume now): every page of it goes.
  await read(200_000, 4096);
  writer.forget(uid);
  assert.equal(writer.remotePages.bytes, 0);

  // The bound: four pages at most, the least recently used go first.
  const fresh = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => replicas,
    epochOf: () => 2,
    remotePagesBytes: 4 * remotePageBytes,
  });
  await fresh.write(name, 0, whole, { truncate: true });
  for (let page = 0; page < 8; page++) {
    const into = new Uint8Array(4096);
    await fresh.read(name, page * remotePageBytes, into, { existing: true });
    assert.deepEqual(into, whole.subarray(page * remotePageBytes, page * remotePageBytes + 4096));
  }
  assert.equal(fresh.remotePages.bytes, 4 * remotePageBytes);
});

Deno.test("a read that a write crosses leaves its replica current (no whole copy at the next write)", async () => {
  /** A replica whose reads answer only once `release` is called, with what they read before. */
  class SlowReads extends TestReplica {
    replaced = 0;
    #held: Promise<void> | null = null;
    release: () => void = () => {};
    hold(): void {
      this.#held = new Promise((resolve) => this.release = resolve);
    }
    override async read(name: string, offset: number, length: number) {
      const read = await super.read(name, offset, length);
      if (this.#held !== null) await this.#held;
      return read;
    }
    override change(name: string, change: Parameters<TestReplica["change"]>[1]) {
      if (change.replace === true) this.replaced++;
      return super.change(name, change);
    }
  }
  const replicas = [new SlowReads("a"), new SlowReads("b")];
  const writer = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => replicas,
    epochOf: () => 1,
    remotePagesBytes: 0, // every read goes to a replica
  });
  await writer.write(name, 0, pattern(8192, 1), { truncate: true });
  for (const replica of replicas) replica.hold();
  const into = new Uint8Array(4096);
  const reading = writer.read(name, 0, into, { existing: true });
  await new Promise((resolve) => setTimeout(resolve, 5));
  await writer.write(name, 0, pattern(4096, 2), { existing: true }); // crosses the read
  for (const replica of replicas) replica.release();
  await reading;
  const either = [pattern(8192, 1).subarray(0, 4096), pattern(4096, 2)];
  assert.ok(either.some((version) => version.every((byte, i) => byte === into[i])), "a version");
  await writer.write(name, 4096, pattern(4096, 3), { existing: true });
  assert.deepEqual(replicas.map((replica) => replica.replaced), [0, 0], "no whole copy");
});

Deno.test("a large read of an object held elsewhere evicts nothing once the cache is full", async () => {
  // A sequential pass larger than the cache evicts every page before its next use: reads of
  // uncachedReadBytes or more go to a replica and are not kept once the cache is full (a
  // copy and an allocation a page saved), and are kept while it has room.
  // Room for the pages of one such read, not for a second.
  const { reads, writer, whole } = await writtenElsewhere(uncachedReadBytes / remotePageBytes, 5);
  const into = new Uint8Array(uncachedReadBytes);
  await writer.read(name, 512 * 1024, into, { existing: true }); // room: kept
  assert.equal(writer.remotePages.bytes, uncachedReadBytes);
  await writer.read(name, 4096, into, { existing: true }); // no room: not kept, nothing evicted
  assert.deepEqual(into, whole.subarray(4096, 4096 + uncachedReadBytes));
  assert.equal(reads(), 2);
  assert.equal(writer.remotePages.bytes, uncachedReadBytes, "nothing kept, nothing evicted");
  // The writer's own change is seen by the next large read (no page to patch or drop).
  const patch = pattern(10_000, 6);
  await writer.write(name, 100_000, patch, { existing: true });
  whole.set(patch, 100_000);
  await writer.write(name, 600_000, patch, { existing: true }); // into the pages kept
  whole.set(patch, 600_000);
  await writer.read(name, 4096, into, { existing: true });
  assert.deepEqual(into, whole.subarray(4096, 4096 + uncachedReadBytes));
  assert.equal(reads(), 3);
  // The pages kept serve a large read they cover whole, the write patched in.
  await writer.read(name, 512 * 1024, into, { existing: true });
  assert.deepEqual(into, whole.subarray(512 * 1024, 512 * 1024 + uncachedReadBytes));
  assert.equal(reads(), 3, "covered by cached pages: no call");
});

Deno.test("a reader under a read view reads an object held elsewhere from memory once it read it; a new view sees newer copies", async () => {
  const { replicas, reads, writer, whole } = await writtenElsewhere(4, 1);
  // A node keeping a reader of a volume nobody writes: no replica, no lease.
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => replicas,
    epochOf: () => 0,
    remotePagesBytes: 4 * remotePageBytes,
  });
  const read = async (view: string, offset: number, length: number) => {
    const into = new Uint8Array(length);
    await reader.read(name, offset, into, { existing: true, view });
    return into;
  };
  assert.deepEqual(await read("v1", 5000, 4096), whole.subarray(5000, 9096));
  const looked = reads();
  assert.deepEqual(await read("v1", 100, 512), whole.subarray(100, 612));
  assert.equal(
    reads(),
    looked + 1,
    "the second read fetches the pages around it from the copy found",
  );
  assert.deepEqual(await read("v1", 9000, 4096), whole.subarray(9000, 13096));
  assert.deepEqual(await read("v1", 60_000, 4096), whole.subarray(60_000, 64_096));
  assert.equal(reads(), looked + 1, "reads within the fetched pages cost no call");

  // The object changes (under a later lease epoch: a new view); pages of the old copy never serve it.
  const patch = pattern(1000, 9);
  await writer.write(name, 6000, patch, { existing: true });
  whole.set(patch, 6000);
  assert.deepEqual(await read("v2", 4096, 8192), whole.subarray(4096, 12288));
  assert.deepEqual(await read("v2", 5000, 4096), whole.subarray(5000, 9096));
  assert.deepEqual(await read("v2", 0, 4096), whole.subarray(0, 4096));

  // The copy found changes under the view (a replica lost it): the read looks again.
  const before = reads();
  const found = replicas.find((replica) => replica.reads > 0)!;
  found.down = true;
  const far = 3 * remotePageBytes + 3392; // in a page no read of this view fetched
  assert.deepEqual(await read("v2", far, 4096), whole.subarray(far, far + 4096));
  found.down = false;
  assert.ok(reads() > before);
});

Deno.test("a read of pages that the holder's own change crosses returns a version of the bytes", async () => {
  /** A replica whose reads wait for `release` before they read (a change can land first). */
  class LateReads extends TestReplica {
    #held: Promise<void> | null = null;
    release: () => void = () => {};
    hold(): void {
      this.#held = new Promise((resolve) => this.release = resolve);
    }
    override async read(name: string, offset: number, length: number) {
      if (this.#held !== null) await this.#held;
      return await super.read(name, offset, length);
    }
  }
  const replicas = [new LateReads("a"), new LateReads("b")];
  const writer = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => replicas,
    epochOf: () => 1,
    remotePagesBytes: 4 * remotePageBytes,
  });
  await writer.write(name, 0, pattern(8192, 1), { truncate: true });
  for (const replica of replicas) replica.hold();
  const into = new Uint8Array(4096);
  const reading = writer.read(name, 4096, into, { existing: true });
  await new Promise((resolve) => setTimeout(resolve, 5));
  // The change lands on the replicas (and is acknowledged) before they serve the read.
  await writer.write(name, 4096, pattern(4096, 2), { existing: true });
  for (const replica of replicas) replica.release();
  await reading;
  const either = [pattern(8192, 1).subarray(4096), pattern(4096, 2)];
  assert.ok(either.some((version) => version.every((byte, i) => byte === into[i])), "a version");
});

Deno.test("a full cache fills its next pages into the buffers of the pages it evicts, and serves each page's own bytes", () => {
  const pages = new RemotePages(4 * remotePageBytes);
  const names = Array.from({ length: 16 }, (_, i) => `${uid}.1.${i}`);
  for (const [i, name] of names.entries()) {
    pages.fill(name, [1, 1], 0, pattern(2 * remotePageBytes, i));
  }
  // Four pages fit (two objects); the third object's two were made before its fill evicted
  // any, and every later page took an evicted page's buffer (a fresh one each: 32 made).
  assert.equal(pages.buffersMade, 6);
  assert.equal(pages.bytes, 4 * remotePageBytes);
  for (const [i, name] of names.entries()) {
    const into = new Uint8Array(2 * remotePageBytes);
    const held = pages.read(name, [1, 1], 0, into);
    assert.equal(held, i >= names.length - 2, `object ${i} cached`);
    if (held) assert.deepEqual(into, pattern(2 * remotePageBytes, i));
  }
  // Pages dropped give their buffers back too: the next fills make none.
  pages.drop(names[names.length - 1]);
  pages.fill(`${uid}.1.99`, [1, 1], 0, pattern(2 * remotePageBytes, 99));
  assert.equal(pages.buffersMade, 6);
  const into = new Uint8Array(2 * remotePageBytes);
  assert.ok(pages.read(`${uid}.1.99`, [1, 1], 0, into));
  assert.deepEqual(into, pattern(2 * remotePageBytes, 99));
});

Deno.test("a cache given a toucher fills its new pages into slabs touched ahead, while it may grow", async () => {
  const touched: SharedArrayBuffer[] = [];
  const touch = (buffer: SharedArrayBuffer) => {
    touched.push(buffer);
    return Promise.resolve();
  };
  const pages = new RemotePages(160 * remotePageBytes, touch);
  const fill = (i: number) =>
    pages.fill(`${uid}.1.${i}`, [1, 1], 0, new Uint8Array(remotePageBytes).fill(i & 0xff));
  fill(0); // no slab ready yet: a buffer of its own, and the first slab asked for
  assert.equal(pages.buffersMade, 1);
  assert.equal(touched.length, 1);
  await Promise.resolve(); // the touch settles
  for (let i = 1; i < 150; i++) {
    fill(i);
    if (i % 32 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
  }
  // Every later page came from a touched slab (64 pages each), and slabs stopped with the
  // cache's room: 150 pages need three.
  assert.ok(pages.buffersMade <= 3, `${pages.buffersMade} buffers made`);
  assert.ok(touched.length <= 4, `${touched.length} slabs`);
  assert.ok(pages.slabs.touched >= 2 && pages.slabs.failed === 0, JSON.stringify(pages.slabs));
  for (let i = 0; i < 150; i++) {
    const into = new Uint8Array(remotePageBytes);
    assert.ok(pages.read(`${uid}.1.${i}`, [1, 1], 0, into), `page ${i} cached`);
    assert.deepEqual(into, new Uint8Array(remotePageBytes).fill(i & 0xff));
  }
  // Full: evictions give their buffers, no slab is asked for.
  const slabs = touched.length;
  for (let i = 150; i < 400; i++) fill(i);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(touched.length, slabs);
});
