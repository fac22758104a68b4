/**
 * Goal: a replica's flush tells a writer only stamps its sync made durable. A
 * change applied while the flush's sync is under way is not covered by that
 * sync (the journal syncs what was appended when the sync began), so a flush
 * that answers it as its copy's stamp claims a version a crash takes back, and
 * the writer counts a copy durable that is not (its floors and what it takes
 * for seen rest on that claim).
 * And the writer: a change answered while its flush runs is that flush's to
 * leave, not a reason to count the replicas behind.
 * Method: an ObjectReplica on a memory disk with crash semantics, its journal
 * sync held open by a gate; a change lands while the flush waits on it; the
 * node then crashes, opens again on what its disk kept, and its copy's stamp
 * must be at least the one the flush answered. Then a ReplicatedObjects over
 * two such replicas, a write answered while its flush's syncs are held.
 */
import assert from "node:assert/strict";
import { compareStamps, ObjectReplica, ReplicatedObjects, type Stamp } from "../data/mod.ts";
import { MemoryDisk, MemoryPlatter } from "./_memory_disk.ts";
import { HeldJournal, small, TestReplica } from "./_test_replica.ts";

const uid = "c3".repeat(16);
const name = `${uid}.1.0`;

function open(platter: MemoryPlatter) {
  const disk = new MemoryDisk({ platter, now: () => 0 });
  const journal = new HeldJournal(disk);
  return { disk, journal, replica: new ObjectReplica("n1", disk, { journal }) };
}

for (const bytes of [4096, 256 * 1024]) {
  const how = bytes >= 128 * 1024 ? "written in place" : "journaled";
  Deno.test(`a flush answers no stamp its sync did not cover (a change ${how})`, async () => {
    const platter = new MemoryPlatter();
    const first = open(platter);
    const data = (byte: number) => new Uint8Array(bytes).fill(byte);
    await first.replica.change(name, { epoch: 1, version: 1, offset: 0, data: data(1) });
    await first.replica.flush([name]);

    first.journal.hold();
    const flushing = first.replica.flush([name]);
    await first.journal.syncing;
    const applied = await first.replica.change(name, {
      epoch: 1,
      version: 2,
      offset: 0,
      data: data(2),
    });
    assert.deepEqual(applied, { applied: true, stamp: [1, 2] });
    first.journal.release();
    const [answered] = await flushing;

    first.disk.crash();
    const second = open(platter);
    const [kept] = await second.replica.stamps([name]);
    assert.ok(
      compareStamps(kept, answered as Stamp) >= 0,
      `the flush answered ${answered} as durable; after a crash the copy holds ${kept}`,
    );
    const { data: read } = await second.replica.read(name, 0, bytes);
    assert.equal(read[0], kept[1], "the bytes of the stamp kept");
  });
}

Deno.test("a write answered while a flush runs leaves the replicas current", async () => {
  const replicas = [new TestReplica("a"), new TestReplica("b")];
  const writer = new ReplicatedObjects({
    selfId: "w",
    replicasOf: () => replicas,
    epochOf: () => 1,
    everyone: () => replicas,
  });
  await writer.write(name, 0, small(1), { truncate: true });
  await writer.flush(uid);
  await writer.write(name, 0, small(2));
  for (const replica of replicas) replica.journal.hold();
  const flushing = writer.flush(uid);
  await Promise.all(replicas.map((replica) => replica.journal.syncing));
  await writer.write(name, 0, small(3));
  for (const replica of replicas) replica.journal.release();
  await flushing;
  assert.deepEqual(
    replicas.map((replica) => replica.flushes),
    [2, 2],
    "each flush asked each replica once: none found behind and asked again",
  );
  await writer.write(name, 0, small(4));
  await writer.flush(uid);
  assert.deepEqual(
    { laggards: writer.counters.laggards, repairs: writer.counters.repairs },
    { laggards: 0, repairs: 0 },
    "no replica was counted behind, none brought up",
  );
  for (const replica of replicas) {
    replica.restart();
    const { data, stamp } = await replica.read(name, 0, -1);
    assert.deepEqual(
      { data, stamp },
      { data: small(4), stamp: [1, 4] },
      `flushed on ${replica.id}`,
    );
  }
});
