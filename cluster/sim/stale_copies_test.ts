/**
 * Goal: a read or a writer's learning never takes a stale copy of an object
 * for its newest, however the copies came to be where they are.
 * - A flush makes writes durable on the replicas of the placement as it is
 *   now, not where they went before the writer heard of a join; a copy a
 *   write left behind off the placement raises the object's floor.
 * - Replicas that agree on a copy below the object's floor are neither read
 *   nor written over: the copy at the floor is looked for off the placement,
 *   and the object is unavailable until it answers; a floor claims no more
 *   than the stamp its flush found durable.
 * - A read of a volume whose writer is gone without releasing it hears every
 *   live member, and the first read of an object under a read view asks
 *   them too: the writer placed objects by its own view of the members.
 * - A read that does not hear every replica of its placement hears every live
 *   member, or fails: the silent replica may be the one holding the newest;
 *   and asks the replicas that answered again, since a copy may have moved
 *   onto one of them while the silent one held the read up.
 * Method: ReplicatedObjects over ObjectReplicas on memory disks, each behind
 * a link the test can cut; healing's copies made by hand (healCopy).
 */
import assert from "node:assert/strict";
import { ReplicaQuorumError, ReplicatedObjects, type Stamp } from "../data/mod.ts";
import { healCopy, memoryFloors, small, TestReplica } from "./_test_replica.ts";

const uid = "a".repeat(32);
const name = `${uid}.1.0`;

Deno.test("a flush makes writes durable where the placement is now, not where they went", async () => {
  // Seed 450496 (joins) at 06e1aba: a holder wrote and flushed an object on the replicas it
  // knew; two members had joined, healing had copied an older version to them, and once every
  // member heard of the join the placement was those two. The flush counted the old replicas,
  // the lease moved, and the new holder read the older version, on which both new replicas
  // agreed. Only replicas of the placement as it is now count; the others are sources.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
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
  // The reader holds no lease (epoch 0): a holder's later reads of an object it has not
  // written go to the copy its first look took, as nobody else writes it meanwhile.
  const reader = new ReplicatedObjects({ selfId: "r", ...options, epochOf: () => 0 });
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

Deno.test("a flush raises the floor when a write moved with the placement and left a copy behind", async () => {
  // Seed 1201668 (joins, leaves) at 21ae805: R = 2, the holder wrote an object on a and b,
  // heard of a join that moved it to a and c, wrote the next version there (b kept the
  // version before) and flushed both copies of the placement: no floor. Then a and c left,
  // and a snapshot read found a silent replica, an empty new one, and b's copy off the
  // placement, which it took for the newest. The copy left behind now raises the floor.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const floors = memoryFloors();
  let placement = [a, b];
  const writer = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => placement,
    epochOf: () => 1,
    everyone: () => replicas,
    floors,
  });
  await writer.write(name, 0, small(1), { truncate: true });
  placement = [a, c]; // the writer hears of the join before its flush
  await writer.write(name, 0, small(2), { existing: true });
  await writer.flush(uid);
  assert.equal(floors.saved.size, 1, "the flush raised the object's floor");
  a.down = true; // a and c leave: the only copies of version 2 are away
  c.down = true;
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [a, d],
    epochOf: () => 2,
    everyone: () => [b, d],
    floors,
  });
  const into = new Uint8Array(4096);
  await assert.rejects(reader.read(name, 0, into, { existing: true }), ReplicaQuorumError);
  a.down = false; // a comes back: version 2 is read
  await reader.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2));
});

Deno.test("a floor claims only the stamp its flush found durable, not a change that failed since", async () => {
  // Seed 700810 (joins, leaves, replacements) at 9231d01: a flush counted one copy of an
  // object durable (R = 2, the other replica dead); while it made another object durable, a
  // change of the first failed, and the floor was raised at that change's stamp, which no
  // copy ever held: the object could never be read again.
  class SlowSecondFlush extends TestReplica {
    release: () => void = () => {};
    #second = new Promise<void>((resolve) => this.release = resolve);
    /** Flushes asked, the lost one included. */
    asked = 0;
    override async flush(names: string[]): Promise<Stamp[]> {
      this.asked++;
      if (this.asked === 1) throw new Error("the first flush is lost");
      if (this.asked === 2) await this.#second;
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
  await writer.write(y, 0, small(1), { truncate: true });
  await writer.write(x, 0, small(1), { truncate: true });
  const flushing = writer.flush(uid); // x is durable on a; y waits on c
  while (c.asked < 2) await new Promise((resolve) => setTimeout(resolve, 1));
  a.down = true;
  await assert.rejects(writer.write(x, 0, small(2), { existing: true }), ReplicaQuorumError);
  a.down = false;
  c.release();
  await flushing;
  assert.deepEqual(saved.get(x)?.stamp, (await a.stamps([x]))[0]);
  const reader = new ReplicatedObjects({ selfId: "r", replicasOf: placement, ...options });
  const into = new Uint8Array(4096);
  await reader.read(x, 0, into, { existing: true });
  assert.deepEqual(into, small(1));
});

/** Bytes of one fill. */

/**
 * A writer that placed the object on a and b flushed version 2 there, after
 * healing had copied version 1 to c and d, where the returned reader looks.
 */
async function placedElsewhere() {
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
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
  return { reader, b };
}

Deno.test("a read of a volume whose writer is gone finds writes it placed where the reader does not look", async () => {
  // Seed 710480 (joins, leaves, replacements) at 048e635: a holder that heard of a join late
  // wrote and flushed an object on the replicas of its view; healing had copied an older
  // version to the replicas of the new placement, and a member that saw the holder dead read
  // the record's state there: both replicas agreed on the older version.
  const { reader, b } = await placedElsewhere();
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
  const { reader, b } = await placedElsewhere();
  const into = new Uint8Array(4096);
  await reader.read(name, 0, into, { existing: true, view: `${uid}@1` });
  assert.deepEqual(into, small(2));
  // A member that does not answer is not waited for (the view's reads must not stall).
  b.down = true;
  await reader.read(name, 0, into, { existing: true, view: `${uid}@2` });
  assert.deepEqual(into, small(2));
});

Deno.test("a read that does not hear every replica hears every live member, or fails", async () => {
  // Seed 801146 (joins, leaves, replacements): the snapshot's writer placed an object on b and
  // a; the reader's view placed it on c, which kept version 1 from an earlier placement, and
  // b. With b cut off from the reader, c's answer was enough for a read of two replicas, and
  // the read served version 1 while a, holding version 2, was slow to answer.
  const replicas = ["a", "b", "c"].map((id) => new TestReplica(id));
  const [a, b, c] = replicas;
  const writer = new ReplicatedObjects({ selfId: "w", replicasOf: () => [b, c], epochOf: () => 1 });
  await writer.write(name, 0, small(1), { truncate: true });
  await writer.flush(uid);
  const moved = new ReplicatedObjects({ selfId: "w", replicasOf: () => [b, a], epochOf: () => 2 });
  await healCopy(b, a, name);
  await moved.write(name, 0, small(2), { existing: true });
  await moved.flush(uid);
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [c, b],
    epochOf: () => 0,
    everyone: () => replicas,
  });
  const into = new Uint8Array(4096);
  b.down = true;
  a.down = true;
  await assert.rejects(
    reader.read(name, 0, into, { existing: true, frozen: true }),
    ReplicaQuorumError,
  );
  a.down = false;
  await reader.read(name, 0, into, { existing: true, frozen: true });
  assert.deepEqual(into, small(2));
});

Deno.test("a strict look asks the replicas that answered again: a copy handed to one meanwhile is found", async () => {
  // Seed 5500256 (joins, leaves): a new replica answered "nothing"; the other replica was
  // silent, so the read's strict look came a call's timeout later, after healing had handed
  // the newest copy to the new replica and its old holder had let its own go; the look found
  // only a copy a member back from a leave had kept, and the read served it.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const first = new ReplicatedObjects({ selfId: "w", replicasOf: () => [a, b], epochOf: () => 1 });
  await first.write(name, 0, small(1), { truncate: true });
  await first.flush(uid); // version 1 on a and b
  const writer = new ReplicatedObjects({ selfId: "v", replicasOf: () => [a, d], epochOf: () => 2 });
  await writer.write(name, 0, small(2), { existing: true });
  await writer.flush(uid); // the newest on a and d; b keeps version 1
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [c, d],
    epochOf: () => 0,
    everyone: () => replicas.filter((replica) => !replica.down),
  });
  d.down = true; // silent: the read's look off the placement is strict
  const readOfC = c.read.bind(c);
  c.read = async (object, offset, length) => {
    const nothing = await readOfC(object, offset, length);
    c.read = readOfC;
    await healCopy(a, c, name); // healing hands the newest copy to c...
    a.stamps = (names) => Promise.resolve(names.map((): Stamp => [0, 0])); // ...a lets go of its own
    return nothing;
  };
  const into = new Uint8Array(4096);
  await reader.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2));
});
