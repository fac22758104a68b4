/**
 * Goal: once a read of an object held elsewhere missed a page, the rest of
 * the object's pages are fetched in the background (its `extent`), so that
 * the reads after it cost no call; one fetch ahead at a time, none asked
 * while a read waits for a fetch, none past the cache's room (they evict
 * nothing), none without an extent; a page whose copy changed meanwhile is
 * never served. Method: ReplicatedObjects over ObjectReplicas on memory disks
 * behind links whose reads the test can hold, counting and watching the
 * reads that reach the replicas.
 */
import assert from "node:assert/strict";
import { ReplicatedObjects } from "../data/mod.ts";
import { remotePageBytes } from "../data/_remote_pages.ts";
import { TestReplica } from "./_test_replica.ts";

const uid = "c".repeat(32);
const names = [`${uid}.1.0`, `${uid}.1.1`];
/** Sixteen pages: a real object (4 MiB) at the real page size. */
const objectBytes = 16 * remotePageBytes;

/**
 * A replica whose reads are counted and, while `held`, have their answers
 * (read when asked) wait for `releaseOne()`, first asked first.
 */
class WatchedReplica extends TestReplica {
  reads: { name: string; offset: number }[] = [];
  inFlight = 0;
  mostInFlight = 0;
  held = false;
  #waiting: (() => void)[] = [];

  override async read(name: string, offset: number, length: number) {
    this.reads.push({ name, offset });
    this.inFlight++;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    const held = this.held ? new Promise<void>((resolve) => this.#waiting.push(resolve)) : null;
    try {
      const answer = await super.read(name, offset, length);
      await held;
      return answer;
    } finally {
      this.inFlight--;
    }
  }

  /** Lets the answer held longest go. */
  releaseOne(): void {
    this.#waiting.shift()?.();
  }
}

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 13 + seed) & 0xff);
}

/** Lets the background fetches run until the replica is asked nothing new for a while. */
async function settle(replica: WatchedReplica): Promise<void> {
  for (let quiet = 0; quiet < 20;) {
    const [reads, inFlight] = [replica.reads.length, replica.inFlight];
    await new Promise((resolve) => setTimeout(resolve, 0));
    quiet = replica.reads.length === reads && replica.inFlight === inFlight ? quiet + 1 : 0;
  }
}

/** Both objects written whole through a writer that holds no copy, on one watched replica. */
async function writtenElsewhere(cachePages: number) {
  const replica = new WatchedReplica("a");
  const writer = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => [replica],
    epochOf: () => 1,
    remotePagesBytes: cachePages * remotePageBytes,
  });
  const wholes = names.map((_, i) => pattern(objectBytes, i + 1));
  for (const [i, name] of names.entries()) {
    await writer.write(name, 0, wholes[i], { truncate: true });
  }
  // The writes patched nothing into the cache (it held no page): reads start cold.
  replica.reads = [];
  return { replica, writer, wholes };
}

Deno.test("a read that misses a page of an object held elsewhere has the rest of it fetched ahead, one page at a time", async () => {
  const { replica, writer, wholes } = await writtenElsewhere(64);
  const read = async (name: string, offset: number, length: number, extent?: number) => {
    const into = new Uint8Array(length);
    await writer.read(name, offset, into, { existing: true, extent });
    return into;
  };
  const at = 5 * remotePageBytes + 1000;
  assert.deepEqual(await read(names[0], at, 4096, objectBytes), wholes[0].subarray(at, at + 4096));
  await settle(replica);
  assert.equal(replica.reads.length, 16, "the page missed, then the other fifteen");
  assert.equal(replica.mostInFlight, 1, "one fetch at a time");
  assert.deepEqual(
    replica.reads.slice(1).map(({ offset }) => offset / remotePageBytes),
    [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4],
    "from the page after the one missed on",
  );
  assert.equal(writer.remotePages.ahead, 15);
  for (let page = 0; page < 16; page++) {
    const offset = page * remotePageBytes + 333;
    assert.deepEqual(await read(names[0], offset, 8192), wholes[0].subarray(offset, offset + 8192));
  }
  assert.equal(replica.reads.length, 16, "every page read from memory");

  // Without an extent (an engine caller that does not know the object's size), nothing ahead.
  assert.deepEqual(await read(names[1], 0, 4096), wholes[1].subarray(0, 4096));
  await settle(replica);
  assert.equal(replica.reads.length, 17);
});

/** Lets every callback and timer due now run. */
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("fetches ahead wait while a read waits for a fetch, and never evict", async () => {
  const { replica, writer, wholes } = await writtenElsewhere(4);
  const read = async (name: string, offset: number) => {
    const into = new Uint8Array(4096);
    await writer.read(name, offset, into, { existing: true, extent: objectBytes });
    assert.deepEqual(into, wholes[names.indexOf(name)].subarray(offset, offset + 4096));
  };
  replica.held = true;
  const first = read(names[0], 0);
  await tick();
  replica.releaseOne();
  await first;
  await tick();
  assert.deepEqual(replica.reads.at(-1), { name: names[0], offset: remotePageBytes });
  assert.equal(replica.inFlight, 1, "page 1 is asked ahead");
  const missed = read(names[1], 2 * remotePageBytes);
  await tick();
  assert.equal(replica.inFlight, 2, "a read's fetch is asked at once, next to the one ahead");
  replica.releaseOne(); // the page ahead answers; the read's fetch is still held
  await tick();
  assert.equal(replica.reads.length, 3, "nothing is asked ahead while a read waits");
  assert.equal(replica.inFlight, 1);
  replica.releaseOne();
  await missed;
  await tick();
  assert.deepEqual(replica.reads.at(-1), { name: names[0], offset: 2 * remotePageBytes });
  replica.releaseOne(); // the fourth page: the cache is full, and nothing more is asked
  await settle(replica);
  assert.equal(replica.reads.length, 4);
  assert.equal(replica.mostInFlight, 2);
  assert.equal(writer.remotePages.bytes, 4 * remotePageBytes);
  assert.equal(writer.remotePages.ahead, 2);
  replica.held = false;
  await read(names[0], 0);
  await read(names[1], 2 * remotePageBytes + 8192);
  assert.equal(replica.reads.length, 4, "the pages the reads fetched are still kept");
});

Deno.test("a page fetched ahead while the writer changed the object is not kept", async () => {
  const { replica, writer, wholes } = await writtenElsewhere(64);
  const read = async (offset: number, length: number) => {
    const into = new Uint8Array(length);
    await writer.read(names[0], offset, into, { existing: true, extent: objectBytes });
    return into;
  };
  replica.held = true;
  const first = read(0, 4096);
  await tick();
  replica.releaseOne();
  await first;
  await settle(replica);
  assert.equal(replica.inFlight, 1, "page 1, read at the replica, its answer held");
  // The writer changes page 1 while the answer of its fetch ahead is on its way.
  const patch = pattern(4096, 77);
  const whole = wholes[0].slice();
  whole.set(patch, remotePageBytes + 4096);
  await writer.write(names[0], remotePageBytes + 4096, patch);
  replica.held = false;
  replica.releaseOne();
  await settle(replica);
  assert.equal(writer.remotePages.ahead, 0, "the answer at the stamp before the change is dropped");
  assert.equal(replica.reads.length, 2, "and the object's fetches ahead end with it");
  for (let page = 0; page < 16; page++) {
    const offset = page * remotePageBytes;
    assert.deepEqual(
      await read(offset, remotePageBytes),
      whole.subarray(offset, offset + remotePageBytes),
    );
  }
});

Deno.test("a reader under a read view (a fresh clone nobody writes) fetches the rest of an object ahead too", async () => {
  const { replica, wholes } = await writtenElsewhere(64);
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [replica],
    epochOf: () => 0,
    remotePagesBytes: 64 * remotePageBytes,
  });
  const read = async (offset: number) => {
    const into = new Uint8Array(4096);
    await reader.read(names[1], offset, into, { existing: true, view: "v1", extent: objectBytes });
    assert.deepEqual(into, wholes[1].subarray(offset, offset + 4096));
  };
  await read(0); // the first read looks for the newest copy: a read straight from it
  await read(3 * remotePageBytes); // the next one misses a page of that copy
  await settle(replica);
  const asked = replica.reads.length;
  assert.equal(reader.remotePages.ahead, 15);
  for (let page = 0; page < 16; page++) await read(page * remotePageBytes + 4096);
  assert.equal(replica.reads.length, asked, "every page read from memory");
});

Deno.test("a volume another node writes now has no pages fetched ahead any more", async () => {
  const { replica, writer } = await writtenElsewhere(64);
  replica.held = true;
  const first = writer.read(names[0], 0, new Uint8Array(4096), {
    existing: true,
    extent: objectBytes,
  });
  await tick();
  replica.releaseOne();
  await first;
  await settle(replica);
  assert.equal(replica.inFlight, 1, "page 1 is being fetched ahead");
  writer.forget(uid); // the lease moved
  replica.held = false;
  replica.releaseOne();
  await settle(replica);
  assert.equal(replica.reads.length, 2, "nothing more is asked");
  assert.equal(writer.remotePages.ahead, 0, "and the page under way is not kept");
  assert.equal(writer.remotePages.bytes, 0);
});
