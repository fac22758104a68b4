/**
 * Goal: a version a reader or writer waited for, once given up (every member
 * that may hold it answered without it, or was declared lost), is not waited
 * for again: the node goes on from the version it took, and a member that
 * goes away later does not make the object unavailable for ten grace periods
 * (seed 10050468 with joins, leaves and replacements: a new holder read its
 * predecessor's unflushed change; both copies of it were lost in restarts, the
 * holder served the version before, and when one of those members later died
 * for good it refused the object until the member had been gone ten graces).
 * Method: ReplicatedObjects over ObjectReplicas on memory disks behind links
 * the test cuts (TestReplica); restarts lose what was not flushed.
 */
import assert from "node:assert/strict";
import { ReplicatedObjects } from "../data/mod.ts";
import { membersOf, TestReplica } from "./_test_replica.ts";

const uid = "e".repeat(32);
const name = `${uid}.1.0`;
const small = (fill: number) => new Uint8Array(4096).fill(fill);

/**
 * Replicas a and b (the placement) and x; a writer before the holder flushed 1,
 * then wrote 2 and never flushed it.
 */
async function leftUnflushed(): Promise<Placed> {
  const replicas = ["a", "b", "x"].map((id) => new TestReplica(id));
  const [a, b, x] = replicas;
  let placement = [a, b];
  const before = new ReplicatedObjects({ selfId: "w", replicasOf: () => [a, b], epochOf: () => 1 });
  await before.write(name, 0, small(1), { truncate: true });
  await before.flush(uid);
  await before.write(name, 0, small(2), { existing: true }); // never flushed
  const holder = new ReplicatedObjects({
    selfId: "h",
    replicasOf: () => placement,
    epochOf: () => 2,
    ...membersOf(replicas),
  });
  // b dies for good (it answered without the change since its restart) and x replaces it.
  const replaceB = () => {
    b.down = true;
    placement = [a, x];
  };
  return { replicas, holder, replaceB };
}

interface Placed {
  replicas: TestReplica[];
  holder: ReplicatedObjects;
  replaceB: () => void;
}

Deno.test("a holder that gave up a version it read does not wait for it when a member goes later", async () => {
  const { replicas: [a, b], holder, replaceB } = await leftUnflushed();
  const into = new Uint8Array(4096);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2), "the first read finds the unflushed change");
  a.restart();
  b.restart();
  // Every member answers without it: it is gone, and the holder serves the version before.
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(1));
  replaceB();
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(1));
});

Deno.test("a writer that gave up a version it learnt does not wait for it when a member goes later", async () => {
  const { replicas: [a, b], holder, replaceB } = await leftUnflushed();
  const refuse = () => Promise.reject(new Error("does not answer"));
  const changes = [a.change, b.change];
  a.change = b.change = refuse;
  // It learns version 2 (a flush may have made it durable); its change reaches no replica.
  await assert.rejects(holder.write(name, 4096, small(3), { existing: true }));
  a.restart();
  b.restart();
  // Both answer version 1 now: version 2 is given up; the change fails again.
  await assert.rejects(
    holder.write(name, 4096, small(3), { existing: true }),
    /replicas are current/,
  );
  [a.change, b.change] = changes;
  replaceB();
  await holder.write(name, 4096, small(3), { existing: true });
  const into = new Uint8Array(8192);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into.subarray(0, 4096), small(1));
  assert.deepEqual(into.subarray(4096), small(3));
});
