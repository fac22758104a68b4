/**
 * Goal: a lease holder reads an object it has not written (its predecessor
 * did) from the copy its first read found newest, without asking the other
 * replicas each time (only it changes the object while its epoch lasts),
 * once it made that copy durable (its predecessor's last change may not have
 * been flushed); a copy that does not answer at that version sends the read
 * back to the full look, so no read serves bytes the replicas no longer hold.
 * A version that cannot be copied to a write quorum is not served at all.
 * Method: ReplicatedObjects over ObjectReplicas on memory disks behind links
 * the test can cut, a predecessor writing at epoch 1 and the holder reading
 * at epoch 2.
 */
import assert from "node:assert/strict";
import { ReplicaQuorumError, ReplicatedObjects } from "../data/mod.ts";
import { membersOf, small, TestReplica } from "./_test_replica.ts";

const uid = "b".repeat(32);
const name = `${uid}.1.0`;

function cluster() {
  const replicas = ["a", "b", "c"].map((id) => new TestReplica(id));
  const predecessor = new ReplicatedObjects({
    selfId: "p",
    replicasOf: () => replicas,
    epochOf: () => 1,
    ...membersOf(replicas),
  });
  const holder = new ReplicatedObjects({
    selfId: "h",
    replicasOf: () => replicas,
    epochOf: () => 2,
    ...membersOf(replicas),
  });
  return { replicas, predecessor, holder };
}

Deno.test("a holder's later reads of an object it has not written go to one copy", async () => {
  const { replicas, predecessor, holder } = cluster();
  await predecessor.write(name, 0, small(1), { truncate: true });
  await predecessor.flush(uid);
  const into = new Uint8Array(4096);
  await holder.read(name, 0, into, { existing: true }); // the first read looks everywhere
  assert.deepEqual(into, small(1));
  assert.equal(holder.counters.heldReads, 0);
  for (let i = 0; i < 5; i++) {
    into.fill(0);
    await holder.read(name, 0, into, { existing: true });
    assert.deepEqual(into, small(1));
  }
  assert.equal(holder.counters.heldReads, 5);
  // Two replicas silent: a full read wants a majority (a holder that has not read the object
  // yet is refused), while the copy the look took (a's, the first replica, read at once)
  // still answers this holder.
  const silent = replicas.filter((replica) => replica.id !== "a");
  for (const replica of silent) replica.down = true;
  const fresh = new ReplicatedObjects({
    selfId: "f",
    replicasOf: () => replicas,
    epochOf: () => 2,
    ...membersOf(replicas),
  });
  await assert.rejects(
    fresh.read(name, 0, new Uint8Array(4096), { existing: true }),
    ReplicaQuorumError,
  );
  into.fill(0);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(1));
  assert.equal(holder.counters.heldReads, 6);
  for (const replica of silent) replica.down = false;
  // Its own write makes it the writer: reads follow its writes.
  await holder.write(name, 0, small(3), { existing: true });
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(3));
});

Deno.test("a holder's first read makes its predecessor's change durable before serving it", async () => {
  const { replicas, predecessor, holder } = cluster();
  const [a, b, c] = replicas;
  await predecessor.write(name, 0, small(1), { truncate: true });
  await predecessor.flush(uid);
  // The predecessor's last change, on a and b only and never flushed.
  c.down = true;
  await predecessor.write(name, 0, small(2), { existing: true });
  c.down = false;
  const into = new Uint8Array(4096);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2)); // the newest copy, made durable on the replicas holding it
  await holder.read(name, 0, into, { existing: true });
  assert.equal(holder.counters.heldReads, 1);
  // Both copies of that change restart and keep it (before, both lost it, and the holder that
  // had served it went back to version 1).
  a.restart();
  b.restart();
  assert.deepEqual(await a.stamps([name]), [[1, 2]]);
  assert.deepEqual(await b.stamps([name]), [[1, 2]]);
  assert.deepEqual(await c.stamps([name]), [[1, 1]]);
  into.fill(0);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2));
  assert.equal(holder.counters.heldReads, 2);
  // The copy the reads went to cut off: the read goes back to a full look, which finds the
  // version on b.
  a.down = true;
  into.fill(0);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(2));
  assert.equal(holder.counters.heldReads, 2);
});

Deno.test("a holder's first read that cannot copy its predecessor's change to a quorum serves none of it", async () => {
  const { replicas, predecessor, holder } = cluster();
  const [a, b, c] = replicas;
  await predecessor.write(name, 0, small(1), { truncate: true });
  await predecessor.flush(uid);
  // The predecessor's last change reaches a alone and fails (never acknowledged).
  b.down = c.down = true;
  await assert.rejects(
    predecessor.write(name, 0, small(2), { existing: true }),
    ReplicaQuorumError,
  );
  b.down = c.down = false;
  // The holder's first read finds it on a; b and c stop answering before it is copied to them.
  let open = () => {};
  b.gate = c.gate = new Promise((resolve) => open = resolve);
  const into = new Uint8Array(4096);
  const reading = holder.read(name, 0, into, { existing: true });
  await new Promise((resolve) => setTimeout(resolve, 5));
  b.down = c.down = true;
  open();
  await assert.rejects(reading, ReplicaQuorumError);
  // a dies for good; b and c are back: the holder serves what a write quorum held, and does not
  // wait for a version only a had (every read would wait for a until declared lost).
  b.gate = c.gate = null;
  a.down = true;
  b.down = c.down = false;
  into.fill(0);
  await holder.read(name, 0, into, { existing: true });
  assert.deepEqual(into, small(1));
});
