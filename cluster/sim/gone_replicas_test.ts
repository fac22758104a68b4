/**
 * Goal: copies left behind when the members holding an object's newest copies
 * went away (left to come back, crashed, died for good) are never taken for its
 * newest, by a reader or by a writer learning where it stands.
 * - An object most of whose replicas, placed over the members with those gossip
 *   called gone lately, are gone is unavailable: the copies that answer for
 *   them may all be older (seed 1327150 with joins, leaves and replacements).
 * - A writer never takes a copy older than one it saw while members called
 *   gone lately are silent (seed 1322459, same options); its own changes that
 *   a failed flush left on too few copies are not such a copy: their loss is
 *   reported, not waited for (seed 2106469); nor are members an operator
 *   declared lost, on whichever node (seed 5300544); nor is a copy a new
 *   holder found of an object no map names, which held only writes no flush
 *   covered (seed 7006044).
 * Method: ReplicatedObjects over ObjectReplicas on memory disks behind links the
 * test cuts; healing's copies made by hand (healCopy).
 */
import assert from "node:assert/strict";
import { ReplicaQuorumError, ReplicatedObjects } from "../data/mod.ts";
import { WritesLostError } from "../../core/mod.ts";
import { healCopy, membersOf, memoryFloors, small, TestReplica } from "./_test_replica.ts";

const uid = "b".repeat(32);
const name = `${uid}.1.0`;

Deno.test("an object whose replicas are mostly gone is not read from the copies left", async () => {
  // Seed 1327150: at R=2 a snapshot's object was flushed at version 2 on a and b; c kept
  // version 1 from healing. a and b both left, the placement moved past the grace to c and
  // d, and reads and a clone's copy-up took c's version 1, d having nothing.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const writer = new ReplicatedObjects({ selfId: "w", replicasOf: () => [a, b], epochOf: () => 1 });
  await writer.write(name, 0, small(1), { truncate: true });
  await writer.flush(uid);
  await healCopy(a, c, name);
  await writer.write(name, 0, small(2), { existing: true });
  await writer.flush(uid);
  a.down = true;
  b.down = true;
  let gone = 2;
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [c, d],
    epochOf: () => 0,
    ...membersOf(replicas),
    goneReplicas: () => Promise.resolve(gone),
  });
  const into = new Uint8Array(4096);
  await assert.rejects(
    reader.read(name, 0, into, { existing: true, frozen: true }),
    (error) => error instanceof ReplicaQuorumError && /left or died lately/.test(error.message),
  );
  // One of them back: its copy is found, and it is the newest.
  a.down = false;
  gone = 1;
  await reader.read(name, 0, into, { existing: true, frozen: true });
  assert.deepEqual(into, small(2));
});

Deno.test("a writer never takes a copy older than one it saw while members gone lately are silent", async () => {
  // Seed 1322459: a new holder learnt an object at the version its predecessor flushed (on
  // a and b), and its first change failed. a and b then left, the placement moved to
  // members new to the object, and the holder's flush took their "nothing" and rewrote the
  // object as removed.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const before = new ReplicatedObjects({ selfId: "w", replicasOf: () => [a, b], epochOf: () => 1 });
  await before.write(name, 0, small(1), { truncate: true });
  await before.flush(uid);
  let placement = [a, b];
  const holder = new ReplicatedObjects({
    selfId: "h",
    replicasOf: () => placement,
    epochOf: () => 2,
    ...membersOf(replicas),
  });
  // It learns the object at version 1 on a and b (its first learning flushes them); its
  // change reaches b alone, and then b leaves too.
  const learning = a.flush;
  a.flush = async (names) => {
    const stamps = await learning.call(a, names);
    a.down = true;
    return stamps;
  };
  await assert.rejects(holder.write(name, 0, small(9), { existing: true }), ReplicaQuorumError);
  a.flush = learning;
  b.down = true;
  placement = [c, d];
  await assert.rejects(
    holder.flush(uid),
    (error) => error instanceof ReplicaQuorumError && /known to exist/.test(error.message),
  );
  // Nothing was written over the flushed version meanwhile; once a is back it is found,
  // and copied to the placement under a version past the change that failed.
  assert.deepEqual(await c.stamps([name]), [[0, 0]]);
  assert.deepEqual(await d.stamps([name]), [[0, 0]]);
  a.down = false;
  await holder.flush(uid);
  const into = new Uint8Array(4096);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(1));
  assert.ok((await c.stamps([name]))[0][1] > 1, "c holds it past the failed change");
});

Deno.test("a writer does not wait for members an operator declared lost, whichever node declared them", async () => {
  // Seed 5300544 (joins, leaves, replacements, a declaration): a holder knew of a version
  // that only a member since declared lost had held (declared on another node), and
  // waited for it a second a try until every read forwarded to it timed out.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const before = new ReplicatedObjects({ selfId: "w", replicasOf: () => [a, b], epochOf: () => 1 });
  await before.write(name, 0, small(1), { truncate: true });
  await before.flush(uid);
  await healCopy(a, c, name); // c keeps version 1
  await before.write(name, 0, small(2), { existing: true });
  await before.flush(uid); // version 2 on a and b only
  const declared = new Set<string>();
  let asked = 0;
  const holder = new ReplicatedObjects({
    selfId: "h",
    replicasOf: () => [c, d],
    epochOf: () => 2,
    ...membersOf(replicas),
    allLost: (ids) => {
      asked++;
      return Promise.resolve(ids.every((id) => declared.has(id)));
    },
  });
  // It learns version 2 on a and b; before it can copy it over, both go for good.
  const learning = a.stamps;
  a.stamps = async (names) => {
    const stamps = await learning.call(a, names);
    a.down = b.down = true;
    return stamps;
  };
  await assert.rejects(holder.write(name, 0, small(9), { existing: true }), ReplicaQuorumError);
  a.stamps = learning;
  const into = new Uint8Array(4096);
  await assert.rejects(
    holder.read(name, 0, into, { existing: true }),
    (error) => error instanceof ReplicaQuorumError && /known to exist/.test(error.message),
  );
  assert.ok(asked > 0, "asked whether the silent members were declared lost");
  // An operator declares both lost (on another node: this one learns it by asking):
  // version 2 is given up, and the holder goes on from the copies left.
  declared.add("a");
  declared.add("b");
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(1));
  await holder.write(name, 0, small(3), { existing: true });
  await holder.flush(uid);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(3));
  assert.deepEqual((await d.read(name, 0, -1)).data, small(3));
});

Deno.test("a writer's own change that a failed flush left on one copy is lost with it, not waited for", async () => {
  // Seed 2106469 (joins, leaves, replacements): R = 2, the holder's flush found its last
  // change on one replica only (the other did not answer) and failed; that member then
  // died for good, and the other came back without the change. Every flush and read after
  // waited for the dead member, as for a copy a writer before it might have flushed; the
  // change was this writer's own and never flushed: its loss is reported once.
  const replicas = ["a", "b", "c"].map((id) => new TestReplica(id));
  const [a, b, c] = replicas;
  let placement = [a, b];
  const holder = new ReplicatedObjects({
    selfId: "h",
    replicasOf: () => placement,
    epochOf: () => 1,
    ...membersOf(replicas),
  });
  await holder.write(name, 0, small(1), { truncate: true });
  await holder.flush(uid);
  await holder.write(name, 0, small(2), { existing: true });
  a.restart(); // a loses the change it had not flushed, and takes no copy of it again
  const change = a.change;
  a.change = () => Promise.reject(new Error("replica a does not answer"));
  await assert.rejects(holder.flush(uid), /durable on 1 replicas, 2 needed/);
  b.down = true; // b dies for good, before the flush's bringing up in the background copies it
  await holder.settle();
  a.change = change;
  placement = [a, c];
  await assert.rejects(holder.flush(uid), WritesLostError);
  await holder.flush(uid);
  const into = new Uint8Array(4096);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(1));
});

Deno.test("a floor whose holders are all declared lost no longer keeps the object unavailable", async () => {
  // R = 2: a flush while b was dead made version 2 durable on a alone and raised the
  // floor, naming a. a then died for good, and b came back with version 1. Readers refuse
  // version 1 until an operator declares a lost: then it is all there is.
  const replicas = ["a", "b", "c"].map((id) => new TestReplica(id));
  const [a, b, c] = replicas;
  const dead = new Set<string>();
  const lost = new Set<string>();
  const floors = memoryFloors();
  const allLost = (ids: string[]) => Promise.resolve(ids.every((id) => lost.has(id)));
  const holder = new ReplicatedObjects({
    selfId: "h",
    replicasOf: () => [a, b],
    epochOf: () => 1,
    isDead: (id) => dead.has(id),
    floors,
    allLost,
  });
  await holder.write(name, 0, small(1), { truncate: true });
  await holder.flush(uid);
  b.down = true;
  dead.add("b");
  await holder.write(name, 0, small(2), { existing: true });
  await holder.flush(uid);
  assert.deepEqual(floors.saved.get(name), { stamp: [1, 2], holders: ["a"] });
  await holder.settle(); // its bringing b up in the background fails while b is down
  a.down = true; // a dies for good; b is back
  dead.add("a");
  b.down = false;
  dead.delete("b");
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [a, b],
    epochOf: () => 0,
    isDead: (id) => dead.has(id),
    everyone: () => [b, c],
    floors,
    allLost,
  });
  const into = new Uint8Array(4096);
  await assert.rejects(reader.read(name, 0, into, { frozen: true }), /below version 1,2/);
  lost.add("a");
  await reader.read(name, 0, into, { frozen: true });
  assert.deepEqual(into, small(1));
});

Deno.test("a new holder's first write of an object no map names waits for no copy of it", async () => {
  // Seed 7006044 (joins, leaves, replacements): a holder crashed after writing an object
  // it never flushed; the next holder's first write of it (a truncating write of a zero
  // entry) took the copy it found for one a flush may have made durable. Both replicas
  // then restarted without it, and every flush and read after waited for a member gone
  // for good that had never held the object, instead of reporting the lost writes.
  const replicas = ["a", "b", "x"].map((id) => new TestReplica(id));
  const [a, b, x] = replicas;
  const before = new ReplicatedObjects({ selfId: "w", replicasOf: () => [a, b], epochOf: () => 1 });
  await before.write(name, 0, small(1), { truncate: true }); // never flushed
  const holder = new ReplicatedObjects({
    selfId: "h",
    replicasOf: () => [a, b],
    epochOf: () => 2,
    ...membersOf(replicas),
  });
  await holder.write(name, 4096, small(2), { truncate: true });
  a.restart();
  b.restart();
  x.down = true; // gone lately, silent
  await assert.rejects(holder.flush(uid), WritesLostError);
  await holder.flush(uid);
  await holder.write(name, 0, small(3), { truncate: true });
  await holder.flush(uid);
  const into = new Uint8Array(4096);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(3));
});
