/**
 * Goal: a flush that leaves a replica of its placement behind raises the
 * object's floor, so that once the replicas holding the flushed copy are away
 * (one left, one died) the replica left behind, and a new member healing
 * copied it to, are not taken for the newest: the object is unavailable until
 * a copy at the floor answers.
 * Method: ReplicatedObjects over ObjectReplicas on memory disks behind links
 * the test can cut, floors in memory, healing's copy made by hand (healCopy).
 */
import assert from "node:assert/strict";
import { ReplicaQuorumError, ReplicatedObjects } from "../data/mod.ts";
import { healCopy, memoryFloors, small, TestReplica } from "./_test_replica.ts";

const uid = "d".repeat(32);
const name = `${uid}.1.0`;

Deno.test("a flush durable on two replicas of three raises the floor: the one behind is never served", async () => {
  // Seed 10092469 (joins, leaves, replacements) at bac67de: n0 flushed an object on itself
  // and n4 while n1, the third replica, was cut off at an older version; no floor (two of
  // three). n4 left, n0 died for good and n7 joined in its place; n1's healing copied its
  // older version to n7, and a read at n1 heard n1 and n7 agree on it (two of three answers)
  // and served a sector the flush had written over.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const floors = memoryFloors();
  const writer = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => [a, b, c],
    epochOf: () => 1,
    floors,
  });
  await writer.write(name, 0, small(1), { truncate: true });
  await writer.flush(uid);
  assert.equal(floors.saved.size, 0, "durable on every replica: no floor");
  c.down = true; // cut off: it misses the next write
  await writer.write(name, 0, small(2), { existing: true });
  await writer.flush(uid); // durable on a and b, c behind
  assert.equal(floors.saved.size, 1, "durable on two of three: the floor is raised");
  await writer.settle(); // its background catch-up of c failed: c is still cut off
  c.down = false;
  a.down = true; // a died for good, b left; d joined, and the placement is now c, d, b
  b.down = true;
  await healCopy(c, d, name); // c's healing hands its (older) copy to the new replica
  let everyone = [c, d];
  const reader = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [c, d, b],
    epochOf: () => 0,
    everyone: () => everyone,
    floors,
  });
  const into = new Uint8Array(4096);
  await assert.rejects(reader.read(name, 0, into, { existing: true }), ReplicaQuorumError);
  // b comes back with the flushed copy: it is found, and read.
  b.down = false;
  everyone = [b, c, d];
  await reader.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2));
});
