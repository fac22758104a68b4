/**
 * Goal: a lease holder takes the version its predecessor left as it stands and
 * makes it durable before it serves it or builds on it, so that a version it
 * waits for is one that exists: restarts keep it, and a member that goes away
 * later (one that never held it) does not make the object unavailable for ten
 * grace periods. Seed 10104780 with joins, leaves and replacements: a new
 * holder learnt its predecessor's unflushed change from the one replica up;
 * that copy was lost in a leave, and once a member that had never held the
 * object died for good, every read of it waited for that member until it had
 * been gone ten grace periods. Seed 10050468 (the reader's side, then fixed by
 * giving the version up once every member answered without it; the version
 * is now kept instead): a new holder read its predecessor's unflushed change,
 * both copies were lost in restarts, and it served the version before.
 * Method: ReplicatedObjects over ObjectReplicas on memory disks behind links
 * the test cuts (TestReplica); restarts lose what was not flushed.
 */
import assert from "node:assert/strict";
import { ReplicatedObjects } from "../data/mod.ts";
import { membersOf, small, TestReplica } from "./_test_replica.ts";

const uid = "e".repeat(32);
const name = `${uid}.1.0`;

/**
 * Replicas a and b (the placement) and x; a writer before the holder flushed 1,
 * then wrote 2 and never flushed it. `replace(r)`: r dies for good and x takes
 * its place.
 */
async function leftUnflushed() {
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
  const replace = (gone: TestReplica) => {
    gone.down = true;
    placement = [placement.find((replica) => replica !== gone)!, x];
  };
  return { a, b, holder, replace };
}

Deno.test("a holder's first read keeps its predecessor's change, and a later death does not block it", async () => {
  const { a, b, holder, replace } = await leftUnflushed();
  const into = new Uint8Array(4096);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2), "the first read finds the unflushed change");
  // Both restart with nothing read in between, and then b dies for good: before, version 2
  // was lost in the restarts and the holder, which had served it, went back to version 1.
  a.restart();
  b.restart();
  assert.deepEqual(await a.stamps([name]), [[1, 2]]);
  assert.deepEqual(await b.stamps([name]), [[1, 2]]);
  replace(b);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2));
});

Deno.test("a writer's first learning makes its predecessor's change durable, and a later death does not block it", async () => {
  const { a, b, holder, replace } = await leftUnflushed();
  const refuse = () => Promise.reject(new Error("does not answer"));
  const changes = [a.change, b.change];
  a.change = b.change = refuse;
  // It learns version 2 and makes it durable; its change reaches no replica.
  await assert.rejects(holder.write(name, 4096, small(3), { existing: true }));
  // Both restart with nothing read or written in between, and then b dies for good:
  // before, version 2 was lost in the restarts and the writer waited for b.
  a.restart();
  b.restart();
  [a.change, b.change] = changes;
  replace(b);
  await holder.write(name, 4096, small(3), { existing: true });
  const into = new Uint8Array(8192);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into.subarray(0, 4096), small(2));
  assert.deepEqual(into.subarray(4096), small(3));
});
