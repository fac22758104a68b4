/**
 * Goal: a writer whose client flushes after each write starts that flush
 * itself as the write ends (_early_flushes.ts), and the client's own flush then
 * waits for it instead of asking the replicas again; an early flush never
 * stands in for the client's when it could not do the work:
 * - the objects it fell short on are tried again by the client's flush, which
 *   fails while they cannot be made durable;
 * - writes it found lost on every replica fail the client's flush;
 * - a floor it could not raise is raised by the client's flush before it passes;
 * - a client that writes several times between flushes gets none.
 * Method: ReplicatedObjects over ObjectReplicas on memory disks (a restart
 * keeps only what was flushed), each behind a link the test can cut or hold.
 */
import assert from "node:assert/strict";
import { WritesLostError } from "../../core/mod.ts";
import { ReplicaQuorumError, ReplicatedObjects } from "../data/mod.ts";
import { EarlyFlushes } from "../data/_early_flushes.ts";
import { assertFlushedOn, memoryFloors, small, TestReplica } from "./_test_replica.ts";

const uid = "e".repeat(32);
const name = `${uid}.1.0`;

/** A writer with early flushes over two replicas, after one write and its flush. */
async function flushingWriter() {
  const replicas = [new TestReplica("a"), new TestReplica("b")];
  const objects = new ReplicatedObjects({
    selfId: "writer",
    replicasOf: () => replicas,
    epochOf: () => 1,
    earlyFlushes: true,
  });
  await objects.write(name, 0, small(1), { truncate: true });
  await objects.flush(uid); // the volume's first flush: one write before it
  assert.equal(objects.earlyFlushes, 0, "no habit before the first flush");
  return { replicas, objects };
}

const asked = (replicas: TestReplica[]) => replicas.map((replica) => replica.flushes);

Deno.test("a write followed by flushes starts its flush itself; the client's then asks nobody", async () => {
  const { replicas, objects } = await flushingWriter();
  for (let fill = 2; fill <= 4; fill++) {
    await objects.write(name, 0, small(fill));
    await objects.settle(); // the early flush's calls are answered
    const before = asked(replicas);
    await objects.flush(uid);
    assert.deepEqual(asked(replicas), before, "the client's flush found the work done");
  }
  assert.equal(objects.earlyFlushes, 3);
  await assertFlushedOn(replicas, name, small(4));
});

Deno.test("the client's flush waits for an early flush under way and fails with it", async () => {
  const { replicas, objects } = await flushingWriter();
  let answer = () => {};
  replicas[1].gate = new Promise((resolve) => answer = resolve);
  await objects.write(name, 0, small(2)); // acknowledged; its early flush waits at b
  assert.equal(objects.earlyFlushes, 1);
  let settled = false;
  const flushed = objects.flush(uid).finally(() => settled = true);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(settled, false, "the client's flush waits for the early one");
  replicas[1].down = true; // b dies before it answers: durable on a only, one of two
  replicas[1].gate = null;
  answer();
  await assert.rejects(flushed, ReplicaQuorumError);
  await assert.rejects(objects.flush(uid), ReplicaQuorumError, "and every later flush");
  replicas[1].down = false;
  await objects.flush(uid);
  await assertFlushedOn(replicas, name, small(2));
});

Deno.test("writes an early flush finds lost on every replica fail the client's flush", async () => {
  const { replicas, objects } = await flushingWriter();
  let answer = () => {};
  const gate = new Promise<void>((resolve) => answer = resolve);
  for (const replica of replicas) replica.gate = gate;
  await objects.write(name, 0, small(2)); // acknowledged, then both replicas restart
  for (const replica of replicas) replica.restart();
  answer();
  await objects.settle(); // the early flush found the loss and reported nothing
  for (const replica of replicas) replica.gate = null;
  await assert.rejects(objects.flush(uid), WritesLostError, "the client's flush reports it");
});

Deno.test("a client that writes several times between flushes gets no early flush", async () => {
  const { replicas, objects } = await flushingWriter(); // its one write a flush: the habit
  const writes = async (fills: number[]) => {
    for (const fill of fills) {
      await objects.write(name, 0, small(fill));
      await objects.settle();
    }
  };
  await writes([10, 11, 12]); // the first two start one each; the third ends the habit
  assert.equal(objects.earlyFlushes, 2);
  await objects.flush(uid);
  for (let round = 0; round < 3; round++) {
    await writes([13, 14, 15]);
    await objects.flush(uid);
  }
  assert.equal(objects.earlyFlushes, 2, "three writes a flush: none");
  await writes([16]);
  await objects.flush(uid); // one write a flush: the habit again
  const before = asked(replicas);
  await writes([17]);
  assert.equal(objects.earlyFlushes, 3);
  assert.deepEqual(asked(replicas), before.map((n) => n + 1), "one flush call each replica");
});

Deno.test("a floor an early flush could not raise is raised by the client's flush", async () => {
  const replicas = ["a", "b", "c"].map((id) => new TestReplica(id));
  const floors = memoryFloors();
  let refusals = 1;
  const objects = new ReplicatedObjects({
    selfId: "writer",
    replicasOf: () => replicas,
    epochOf: () => 1,
    earlyFlushes: true,
    floors: {
      of: floors.of,
      raise: (volume, raised) =>
        refusals-- > 0
          ? Promise.reject(new Error("register unreachable"))
          : floors.raise(volume, raised),
    },
  });
  await objects.write(name, 0, small(1), { truncate: true });
  await objects.flush(uid); // on every replica: no floor
  replicas[2].down = true;
  await objects.write(name, 0, small(2)); // on a and b: durable on two of three needs a floor
  await objects.settle();
  assert.equal(objects.earlyFlushes, 1);
  assert.equal(refusals, 0, "the early flush tried to raise the floor");
  assert.equal(floors.saved.has(name), false);
  await objects.flush(uid);
  assert.deepEqual(floors.saved.get(name)?.holders, ["a", "b"], "raised before the flush passed");
});

Deno.test("a volume forgotten with writes under way keeps no habit once they end", async () => {
  let started = 0;
  const early = new EarlyFlushes(() => (started++, Promise.resolve()));
  early.writing(uid);
  early.wrote(uid, true);
  early.flushed(uid); // one write a flush: the habit
  early.writing(uid);
  early.writing(uid);
  early.forget(uid); // another node writes it now; two writes still end here
  assert.equal(early.kept, 1, "kept while its writes are under way");
  early.wrote(uid, true);
  early.wrote(uid, false);
  assert.equal(started, 0, "no early flush for a forgotten volume");
  assert.equal(early.kept, 0, "and nothing kept for it after");
  early.writing(uid);
  early.wrote(uid, true);
  early.flushed(uid);
  early.writing(uid);
  early.wrote(uid, true); // the habit anew: an early flush
  assert.equal(started, 1);
  await Promise.resolve();
  early.flushed(uid);
  assert.equal(early.kept, 1, "a volume that flushes often keeps its habit");
});
