/**
 * Goal: a writer never takes writes it acknowledged for durable when they are
 * not, and never lets two copies hold different bytes under one stamp.
 * - A flush that fails is tried again by every later flush: none succeeds
 *   while an object written before it is not durable on a write quorum.
 * - When every replica of an object restarted before a flush made it durable,
 *   the volume's flush says the writes were lost (WritesLostError); it does
 *   not pass. A flush of every volume (a collection's, an upload's) that finds
 *   the loss leaves it for the volume's own flush, read or write.
 * - A flush waits for a flush under way (another volume's, or one of every
 *   volume) that took objects of its scope, and fails when that one could not
 *   make them durable (seed 22330 of the data-path simulation, --boot-reads).
 * - A change that reached only a replica that then stopped answering is never
 *   overtaken by a different change under the same stamp.
 * - A former writer whose lease is not confirmed does not trust what it knew
 *   as the writer: another holder may have written since.
 * - A floor claims no more than the stamp its flush found durable.
 * - A read of a volume whose writer is gone without releasing it (the record
 *   path of a reader that sees the holder dead) hears every live member: the
 *   writer placed objects by its own view of the members.
 * - Replicas that agree on a copy below the object's floor are neither read
 *   nor written over: the copy at the floor is looked for off the placement,
 *   and the object is unavailable until it answers.
 * Method: ReplicatedObjects over ObjectReplicas on memory disks (a restart
 * keeps only what was flushed), each behind a link the test can cut.
 */
import assert from "node:assert/strict";
import { WritesLostError } from "../../core/mod.ts";
import { ReplicaQuorumError, ReplicatedObjects, type Stamp } from "../data/mod.ts";
import { healCopy, memoryFloors, TestReplica } from "./_test_replica.ts";

const uid = "a".repeat(32);
// Flushes name the volume: a loss is reported to the flush of the volume that wrote it.
const name = `${uid}.1.0`;
const size = 4096;
const bytes = (fill: number) => new Uint8Array(size).fill(fill);

function writerOver(replicas: TestReplica[]): ReplicatedObjects {
  return new ReplicatedObjects({ selfId: "writer", replicasOf: () => replicas, epochOf: () => 1 });
}

/** Two replicas holding version 1 of the object durably and version 2 acknowledged, unflushed. */
async function flushedThenWritten() {
  const replicas = [new TestReplica("a"), new TestReplica("b")];
  const objects = writerOver(replicas);
  await objects.write(name, 0, bytes(1), { truncate: true });
  await objects.flush(uid);
  await objects.write(name, 0, bytes(2));
  return { replicas, objects };
}

Deno.test("a failed flush is tried again by the next: none passes without its objects", async () => {
  const { replicas, objects } = await flushedThenWritten(); // acknowledged, not flushed
  replicas[1].down = true;
  await assert.rejects(objects.flush(uid), ReplicaQuorumError);
  await assert.rejects(objects.flush(uid), ReplicaQuorumError, "the second flush must fail too");
  replicas[1].down = false;
  await objects.flush(uid);
  for (const replica of replicas) {
    replica.restart();
    assert.deepEqual((await replica.read(name, 0, -1)).data, bytes(2), `flushed on ${replica.id}`);
  }
});

Deno.test("a flush never passes while a flush under way holds its objects", async () => {
  const { replicas, objects } = await flushedThenWritten(); // acknowledged, not flushed
  let answer = () => {};
  replicas[1].gate = new Promise((resolve) => answer = resolve);
  const everyVolume = objects.flush().then(() => "passed", (error) => error); // an upload's
  let settled = false;
  const volume = objects.flush(uid).finally(() => settled = true); // a release's
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(settled, false, "the volume's flush waits for the one that took its object");
  // Replica b dies before it answers: the object is durable on a only, one of two.
  replicas[1].down = true;
  answer();
  assert.ok(await everyVolume instanceof ReplicaQuorumError);
  await assert.rejects(volume, ReplicaQuorumError);
});

Deno.test("writes lost from every replica before a flush fail the flush, reads and writes", async () => {
  const { replicas, objects } = await flushedThenWritten();
  replicas[0].down = replicas[1].down = true;
  await assert.rejects(objects.flush(uid), ReplicaQuorumError);
  // Both restart before any flush reached them: version 2 is gone everywhere.
  for (const replica of replicas) {
    replica.restart();
    replica.down = false;
  }
  await assert.rejects(objects.flush(uid), WritesLostError);
  // Told once: the object now reads and takes writes from where it was flushed.
  await objects.flush(uid);
  const into = new Uint8Array(size);
  await objects.read(name, 0, into);
  assert.deepEqual(into, bytes(1));
  await objects.write(name, 0, bytes(3));
  await objects.flush(uid);
  for (const replica of replicas) {
    assert.deepEqual((await replica.read(name, 0, -1)).data, bytes(3));
  }
});

Deno.test("a loss a flush of every volume finds is left for the volume to hear", async () => {
  const { replicas, objects } = await flushedThenWritten();
  replicas[0].restart();
  replicas[1].restart();
  await objects.flush(); // a garbage collection's or an upload's: not the writer
  await assert.rejects(objects.flush(uid), WritesLostError);
  await objects.flush(uid); // told once
  await objects.write(name, 0, bytes(3)); // acknowledged, lost again before a flush
  replicas[0].restart();
  replicas[1].restart();
  await objects.flush();
  await assert.rejects(objects.read(name, 0, new Uint8Array(size)), WritesLostError);
  await objects.flush(uid); // the read told it
});

Deno.test("a writer that finds its acknowledged writes gone on read says so", async () => {
  const { replicas, objects } = await flushedThenWritten();
  replicas[0].restart();
  replicas[1].restart();
  await assert.rejects(objects.read(name, 0, new Uint8Array(size)), WritesLostError);
});

Deno.test("a change that reached one replica only is never overtaken under its stamp", async () => {
  const replicas = [new TestReplica("a"), new TestReplica("b"), new TestReplica("c")];
  const objects = writerOver(replicas);
  await objects.write(name, 0, bytes(1), { truncate: true });
  await objects.flush(uid);
  // The next change reaches a alone: not acknowledged.
  replicas[1].down = replicas[2].down = true;
  await assert.rejects(objects.write(name, 0, bytes(2)), ReplicaQuorumError);
  // a stops answering; b and c take the next change.
  replicas[0].down = true;
  replicas[1].down = replicas[2].down = false;
  await objects.write(name, 0, bytes(3));
  await objects.flush(uid);
  // a comes back holding the failed change: whatever a reader picks, and after
  // the writer's next change reaches all three, every copy holds the same bytes.
  replicas[0].down = false;
  const stamps = await Promise.all(replicas.map((replica) => replica.stamps([name])));
  const [a, b] = [stamps[0][0], stamps[1][0]];
  assert.ok(a[0] !== b[0] || a[1] !== b[1], `a holds ${a}, b holds ${b}: one stamp, two contents`);
  await objects.write(name, 0, bytes(4).subarray(0, 512));
  await objects.flush(uid);
  await objects.settle();
  const copies = await Promise.all(replicas.map((replica) => replica.read(name, 0, -1)));
  const expected = bytes(3);
  expected.set(bytes(4).subarray(0, 512));
  for (const [i, copy] of copies.entries()) {
    assert.deepEqual(copy.data, expected, `copy on ${replicas[i].id}`);
  }
});

Deno.test("a former writer whose lease is not confirmed reads from the replicas, not its last stamp", async () => {
  // Seed 150057 (joins) at 7b01c6c: a holder cut off from the others and taken over, not told
  // yet, read a snapshot the new holder had taken from its own copy, which missed the new
  // holder's writes, because its stamp matched what the old holder had last written.
  const replicas = [new TestReplica("a"), new TestReplica("b"), new TestReplica("c")];
  const small = (fill: number) => new Uint8Array(4096).fill(fill);
  let confirmed = true; // the old holder's lease, as it sees it
  const old = new ReplicatedObjects({
    selfId: "c",
    replicasOf: () => replicas,
    epochOf: () => 1,
    trustsWriter: () => confirmed,
  });
  await old.write(name, 0, small(1), { truncate: true });
  await old.flush(uid);
  replicas[2].down = true; // the old holder, c, is cut off; a takes over and writes
  confirmed = false; // its lease runs out unconfirmed
  const taker = new ReplicatedObjects({
    selfId: "a",
    replicasOf: () => replicas,
    epochOf: () => 2,
  });
  await taker.write(name, 0, small(2));
  await taker.flush(uid);
  replicas[2].down = false;
  const into = new Uint8Array(4096);
  await old.read(name, 0, into, { existing: true }); // a snapshot's read: no lease confirmed first
  assert.deepEqual(into, small(2));
});

Deno.test("a flush makes writes durable where the placement is now, not where they went", async () => {
  // Seed 450496 (joins) at 06e1aba: a holder wrote and flushed an object on the replicas it
  // knew; two members had joined, healing had copied an older version to them, and once every
  // member heard of the join the placement was those two. The flush counted the old replicas,
  // the lease moved, and the new holder read the older version, on which both new replicas
  // agreed. Only replicas of the placement as it is now count; the others are sources.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const small = (fill: number) => new Uint8Array(4096).fill(fill);
  let placement = [a, b];
  const writer = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => placement,
    epochOf: () => 1,
    everyone: () => replicas,
  });
  await writer.write(name, 0, small(1), { truncate: true });
  await writer.flush(uid);
  // Healing copies that version to the members that joined.
  for (const replica of [c, d]) await healCopy(a, replica, name);
  await writer.write(name, 0, small(2)); // still on a and b
  placement = [c, d]; // the writer hears of the join
  await writer.flush(uid);
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [c, d],
    epochOf: () => 2,
    everyone: () => replicas,
  });
  const into = new Uint8Array(4096);
  await reader.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2));
});

Deno.test("replicas that agree on a copy below its floor are not taken for the newest", async () => {
  // Seed 600710 (joins, leaves) at 6064f41: R = 2 with replica b dead, a flush made version 2
  // durable on a alone and raised its floor; b came back with version 1, a left, the placement
  // became b and c, healing copied b's version 1 to c, and a reader took the two agreeing
  // copies for the newest. Floors are checked whatever the replicas answer.
  const replicas = ["a", "b", "c"].map((id) => new TestReplica(id));
  const [a, b, c] = replicas;
  const small = (fill: number) => new Uint8Array(4096).fill(fill);
  const floors = memoryFloors();
  const { saved } = floors;
  const dead = new Set<string>();
  const writer = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => [a, b],
    epochOf: () => 1,
    isDead: (id) => dead.has(id),
    floors,
  });
  await writer.write(name, 0, small(1), { truncate: true });
  await writer.flush(uid);
  b.down = true;
  dead.add("b");
  await writer.write(name, 0, small(2), { existing: true });
  await writer.flush(uid); // durable on a alone: its floor is raised
  assert.equal(saved.size, 1);
  await writer.settle(); // its background catch-up of b failed: b is still down
  b.down = false;
  a.down = true; // a leaves; healing copies b's version 1 to c, the placement's new replica
  await healCopy(b, c, name);
  let everyone = [b, c];
  const options = {
    replicasOf: () => [b, c],
    epochOf: () => 2,
    everyone: () => everyone,
    floors,
  };
  const reader = new ReplicatedObjects({ selfId: "r", ...options });
  const into = new Uint8Array(4096);
  await assert.rejects(reader.read(name, 0, into, { existing: true }), ReplicaQuorumError);
  const taker = new ReplicatedObjects({ selfId: "t", ...options });
  await assert.rejects(
    taker.write(name, 0, small(3).subarray(0, 512), { existing: true }),
    ReplicaQuorumError,
  );
  // a comes back, off the placement: the copy at the floor is found there.
  a.down = false;
  everyone = replicas;
  await reader.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2));
  await taker.write(name, 0, small(3).subarray(0, 512), { existing: true });
  await taker.flush(uid);
  await reader.read(name, 0, into, { existing: true });
  assert.deepEqual(into.subarray(0, 512), small(3).subarray(0, 512));
  assert.deepEqual(into.subarray(512), small(2).subarray(512));
});

Deno.test("a floor claims only the stamp its flush found durable, not a change that failed since", async () => {
  // Seed 700810 (joins, leaves, replacements) at 9231d01: a flush counted one copy of an
  // object durable (R = 2, the other replica dead); while it made another object durable, a
  // change of the first failed, and the floor was raised at that change's stamp, which no
  // copy ever held: the object could never be read again.
  class SlowSecondFlush extends TestReplica {
    flushes = 0;
    release: () => void = () => {};
    #second = new Promise<void>((resolve) => this.release = resolve);
    override async flush(names: string[]): Promise<Stamp[]> {
      this.flushes++;
      if (this.flushes === 1) throw new Error("the first flush is lost");
      if (this.flushes === 2) await this.#second;
      return await super.flush(names);
    }
  }
  const [a, b, d] = ["a", "b", "d"].map((id) => new TestReplica(id));
  const c = new SlowSecondFlush("c");
  const floors = memoryFloors();
  const { saved } = floors;
  const x = `${uid}.1.0`;
  const y = `${uid}.1.1`;
  const placement = (object: string) => object === x ? [a, b] : [c, d];
  b.down = d.down = true; // dead: one copy makes a write and a flush
  const options = { epochOf: () => 1, isDead: (id: string) => id === "b" || id === "d", floors };
  const writer = new ReplicatedObjects({ selfId: "w", replicasOf: placement, ...options });
  const small = (fill: number) => new Uint8Array(4096).fill(fill);
  await writer.write(y, 0, small(1), { truncate: true });
  await writer.write(x, 0, small(1), { truncate: true });
  const flushing = writer.flush(uid); // x is durable on a; y waits on c
  while (c.flushes < 2) await new Promise((resolve) => setTimeout(resolve, 1));
  a.down = true;
  await assert.rejects(writer.write(x, 0, small(2), { existing: true }), ReplicaQuorumError);
  a.down = false;
  c.release();
  await flushing;
  assert.deepEqual(saved.get(x), (await a.stamps([x]))[0]);
  const reader = new ReplicatedObjects({ selfId: "r", replicasOf: placement, ...options });
  const into = new Uint8Array(4096);
  await reader.read(x, 0, into, { existing: true });
  assert.deepEqual(into, small(1));
});

Deno.test("a read of a volume whose writer is gone finds writes it placed where the reader does not look", async () => {
  // Seed 710480 (joins, leaves, replacements) at 048e635: a holder that heard of a join late
  // wrote and flushed an object on the replicas of its view; healing had copied an older
  // version to the replicas of the new placement, and a member that saw the holder dead read
  // the record's state there: both replicas agreed on the older version.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const small = (fill: number) => new Uint8Array(4096).fill(fill);
  const writer = new ReplicatedObjects({ selfId: "w", replicasOf: () => [a, b], epochOf: () => 1 });
  await writer.write(name, 0, small(1), { truncate: true });
  await writer.flush(uid);
  // Healing's copies on the placement the writer has not heard of.
  for (const replica of [c, d]) await healCopy(a, replica, name);
  await writer.write(name, 0, small(2), { existing: true });
  await writer.flush(uid);
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [c, d],
    epochOf: () => 0,
    everyone: () => replicas,
  });
  const into = new Uint8Array(4096);
  await reader.read(name, 0, into, { existing: true, orphaned: true });
  assert.deepEqual(into, small(2));
  // Every live member must answer: one that does not may hold the newest copy.
  b.down = true;
  await assert.rejects(
    reader.read(name, 0, into, { existing: true, orphaned: true }),
    ReplicaQuorumError,
  );
});

Deno.test("a read under a view looks past agreeing replicas once, for writes placed elsewhere", async () => {
  // The released counterpart of seed 710480: the last holder flushed where its own view of
  // the members placed the object, and healing had spread an older version to where the
  // reader looks. A view's reads are remembered, so its first lookup asks every live member.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const small = (fill: number) => new Uint8Array(4096).fill(fill);
  const writer = new ReplicatedObjects({ selfId: "w", replicasOf: () => [a, b], epochOf: () => 1 });
  await writer.write(name, 0, small(1), { truncate: true });
  await writer.flush(uid);
  for (const replica of [c, d]) await healCopy(a, replica, name);
  await writer.write(name, 0, small(2), { existing: true });
  await writer.flush(uid);
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [c, d],
    epochOf: () => 0,
    everyone: () => replicas,
  });
  const into = new Uint8Array(4096);
  await reader.read(name, 0, into, { existing: true, view: `${uid}@1` });
  assert.deepEqual(into, small(2));
  // A member that does not answer is not waited for (the view's reads must not stall).
  b.down = true;
  await reader.read(name, 0, into, { existing: true, view: `${uid}@2` });
  assert.deepEqual(into, small(2));
});
