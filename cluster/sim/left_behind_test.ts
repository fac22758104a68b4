/**
 * Goal: copies that a writer finds off its placement when it learns an
 * object (left there by a writer with another view of the members) never pass
 * for the newest with a reader that places the object as that other view did:
 * the writer's next flush raises the object's floor, and such a reader refuses
 * them until its view catches up.
 * Method: ReplicatedObjects over ObjectReplicas on memory disks (TestReplica),
 * two writers and a reader each with its own placement and member list.
 */
import assert from "node:assert/strict";
import { ReplicaQuorumError, ReplicatedObjects } from "../data/mod.ts";
import { healCopy, memoryFloors, small, TestReplica } from "./_test_replica.ts";

const uid = "b".repeat(32);
const name = `${uid}.1.0`;

Deno.test("a writer that finds copies off its placement raises the floor at its flush", async () => {
  // Seed 2204146 (joins, leaves): R = 2 on a and b; c and d joined. A new lease holder
  // that knew of them learnt the object from a and b, wrote it on c and d and flushed
  // both copies: no floor. A snapshot of it was then read by a node that knew neither c
  // nor d, which found a and b agreeing on the version before and took it.
  const replicas = ["a", "b", "c", "d"].map((id) => new TestReplica(id));
  const [a, b, c, d] = replicas;
  const floors = memoryFloors();
  const first = new ReplicatedObjects({
    selfId: "w1",
    replicasOf: () => [a, b],
    epochOf: () => 1,
    everyone: () => [a, b],
    floors,
  });
  await first.write(name, 0, small(1), { truncate: true });
  await first.flush(uid);
  assert.equal(floors.saved.size, 0, "both copies of the placement: no floor");
  const second = new ReplicatedObjects({
    selfId: "w2",
    replicasOf: () => [c, d],
    epochOf: () => 2,
    everyone: () => replicas,
    floors,
  });
  await second.write(name, 0, small(2), { existing: true });
  await second.flush(uid);
  assert.equal(floors.saved.size, 1, "the copies left on a and b raised the floor");
  const into = new Uint8Array(4096);
  const behind = new ReplicatedObjects({
    selfId: "r",
    replicasOf: () => [a, b],
    epochOf: () => 0,
    everyone: () => [a, b],
    floors,
  });
  await assert.rejects(behind.read(name, 0, into, { frozen: true }), ReplicaQuorumError);
  const caughtUp = new ReplicatedObjects({
    selfId: "r2",
    replicasOf: () => [c, d],
    epochOf: () => 0,
    everyone: () => replicas,
    floors,
  });
  await caughtUp.read(name, 0, into, { frozen: true });
  assert.deepEqual(into, small(2));
});

Deno.test("a writer whose replica places the object elsewhere raises the floor at its flush", async () => {
  // Seed 3408302 (joins, leaves): R = 2 on a and b in the writer's view; c joined, and b,
  // which knew it, placed the object on b and c and healed its copy of version 1 onto c.
  // The writer went on to version 2 on a and b and flushed it with no floor; a and b then
  // crashed, and the next holder, placing the object on b and c, found version 1 on c and
  // wrote over it: the flushed version 2 was lost.
  const a = new TestReplica("a", ["a", "b"]);
  const b = new TestReplica("b", ["b", "c"]);
  const c = new TestReplica("c", ["b", "c"]);
  const floors = memoryFloors();
  const writer = new ReplicatedObjects({
    selfId: "w1",
    replicasOf: () => [a, b],
    epochOf: () => 1,
    everyone: () => [a, b],
    floors,
  });
  await writer.write(name, 0, small(1), { truncate: true });
  await writer.flush(uid);
  await healCopy(b, c, name);
  await writer.write(name, 0, small(2), { existing: true });
  await writer.flush(uid);
  assert.equal(floors.saved.size, 1, "b places the object elsewhere: the flush raised the floor");
  a.down = true;
  b.down = true;
  const next = new ReplicatedObjects({
    selfId: "w2",
    replicasOf: () => [b, c],
    epochOf: () => 2,
    everyone: () => [c],
    floors,
  });
  await assert.rejects(next.write(name, 0, small(3), { existing: true }), ReplicaQuorumError);
  const into = new Uint8Array(4096);
  await assert.rejects(next.read(name, 0, into, { frozen: true }), ReplicaQuorumError);
  b.down = false;
  await next.write(name, 4096, small(3), { existing: true });
  await next.read(name, 0, into);
  assert.deepEqual(into, small(2), "the flushed version 2 under the new write");
});
