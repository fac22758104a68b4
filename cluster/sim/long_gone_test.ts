/**
 * Goal: a flushed write is never given up while the members that may hold it
 * are only away, however long they stay away and whatever joins meanwhile. At
 * R = 2 both replicas of a flushed object leave (a graceful stop takes the
 * copies with it), members join (the placement moves to members new to the
 * object, which answer "nothing"), and the two stay away for longer than the
 * ten grace periods strict looks still ask gone members; the writer and a
 * reader elsewhere must refuse the object until the two are back or declared
 * lost, never serve or write "nothing" over it, nor call it corrupt. Method: a
 * scripted ClusterSim (the production node on the simulated network, no random
 * faults). Seed 9 places the volume's map block on the two that leave: its
 * reads said CorruptionError once the two had been gone ten grace periods
 * (block_service.ts took only members gone lately for away).
 */
import assert from "node:assert/strict";
import { ClusterSim } from "./cluster_sim.ts";
import { settle, withVolume } from "./_scripted.ts";
import { sectorBytes, sectorPattern } from "./_cluster_sim_model.ts";
import { simBlockSize, simClusterDeadGraceMs } from "./_cluster_sim_node.ts";
import { goneAskedGraces } from "../_member_view.ts";
import { UnavailableError } from "../../core/mod.ts";

/** What a read of the first block at `id` gives: its bytes, or why it is unavailable now. */
async function firstBlock(sim: ClusterSim, id: string): Promise<Uint8Array | string> {
  const into = new Uint8Array(simBlockSize);
  try {
    const volume = await settle(sim, sim.runtimeOf(id)!.leases.open("v"));
    await settle(sim, volume.read({ offset: 0, length: into.length }, into));
    return into;
  } catch (error) {
    if (!(error instanceof UnavailableError)) throw error;
    return (error as Error).message;
  }
}

/**
 * Five members (R = 2); a member that is no replica of the first object of volume
 * "v" writes its first sectors and flushes; both replicas leave, four members join,
 * and the world runs past every window that asks gone members.
 */
async function awayLong(seed: number) {
  const { sim, run } = await withVolume(seed, 5, 2);
  const uid = (await settle(sim, run("n0").store.loadVolume("v"))).header.uid;
  const replicas = run("n0").engine.replicaPeers(`${uid}.1.0`).map((peer) => peer.id);
  const writer = [...sim.nodes.keys()].find((id) => !replicas.includes(id))!;
  const reader = [...sim.nodes.keys()].find((id) => id !== writer && !replicas.includes(id))!;

  const expected = new Uint8Array(simBlockSize);
  expected.set(sectorPattern(1, 0, 2), 0);
  const volume = await settle(sim, run(writer).leases.open("v"));
  await settle(sim, volume.write(0, sectorPattern(1, 0, 2), false));
  await settle(sim, volume.flush());

  for (const id of replicas) sim.leave(id);
  for (let i = 0; i < 4; i++) sim.join();
  await sim.world.run(sim.world.now() + (goneAskedGraces + 2) * simClusterDeadGraceMs);
  return { sim, writer, reader, replicas, volume, expected };
}

/** Starts the members that left again, and checks both reads see `expected`. */
async function back(sim: ClusterSim, replicas: string[], expected: Uint8Array, readers: string[]) {
  for (const id of replicas) sim.start(id);
  await sim.world.run(sim.world.now() + 3 * simClusterDeadGraceMs);
  for (const id of readers) {
    assert.deepEqual(await firstBlock(sim, id), expected, `read at ${id} once the two are back`);
  }
}

Deno.test("a flushed volume whose replicas stay away long is unavailable, not corrupt", async () => {
  const { sim, writer, reader, replicas, volume, expected } = await awayLong(9);
  for (const id of [writer, reader]) {
    const read = await firstBlock(sim, id);
    if (typeof read !== "string") assert.deepEqual(read, expected, `read at ${id}`);
    // Unavailable (HTTP 503; a patient request waits), never corrupt or "nothing".
    else assert.match(read, /Cannot read block .*no live member holds a good copy.*away: /);
  }
  // Another write of the object at the writer, and a flush, take nothing for lost either.
  const more = await settle(sim, volume.write(2 * sectorBytes, sectorPattern(2, 2, 1), false))
    .then(() => settle(sim, volume.flush())).then(() => true, () => false);
  if (more) expected.set(sectorPattern(2, 2, 1), 2 * sectorBytes);
  await back(sim, replicas, expected, [writer, reader]);
});

Deno.test("a writer whose change failed does not take a flushed object away long for lost", async () => {
  const { sim, writer, reader, replicas, volume, expected } = await awayLong(1);
  // Cut off for a moment, the writer's next change of the object fails; its replicas now
  // are members new to the object, which answer "nothing". The writer must refuse its next
  // change (or make it on the flushed version), not rewrite the object from "nothing".
  const others = [...sim.nodes.keys()].filter((id) => id !== writer);
  for (const id of others) sim.world.cut(writer, id), sim.world.cut(id, writer);
  await assert.rejects(settle(sim, volume.write(2 * sectorBytes, sectorPattern(2, 2, 1), false)));
  sim.world.heal();
  await settle(sim, volume.flush()); // nothing of the object was acknowledged since the last
  // Tried again and again (a guest retries), each refused or made on the flushed version.
  for (let tag = 3; tag < 6; tag++) {
    const again = await settle(sim, volume.write(2 * sectorBytes, sectorPattern(tag, 2, 1), false))
      .then(() => settle(sim, volume.flush())).then(() => true, (error) => error as Error);
    if (again !== true) assert.ok(again instanceof UnavailableError, String(again));
    else expected.set(sectorPattern(tag, 2, 1), 2 * sectorBytes);
  }
  await back(sim, replicas, expected, [reader]);
});

Deno.test("a new holder of a volume whose replicas stay away long does not write over them", async () => {
  const { sim, writer, reader, replicas, volume, expected } = await awayLong(2);
  await settle(sim, volume.flush());
  // The lease moves to another member, which writes the object's other sectors.
  const other = await settle(sim, sim.runtimeOf(reader)!.leases.open("v"))
    .catch((error) => error as Error);
  if (!(other instanceof Error)) {
    const wrote = await settle(sim, other.write(2 * sectorBytes, sectorPattern(4, 2, 2), false))
      .then(() => settle(sim, other.flush())).then(() => true, (error) => error as Error);
    if (wrote !== true) assert.ok(wrote instanceof UnavailableError, String(wrote));
    else expected.set(sectorPattern(4, 2, 2), 2 * sectorBytes);
  } else assert.ok(other instanceof UnavailableError, String(other));
  await back(sim, replicas, expected, [writer, reader]);
});

Deno.test("R=3: a new holder does not take the stale third copy of an object whose two current copies are away long", async () => {
  // Seed 12: the joins move the object's placement off the two (its floor refuses c's copy).
  const { sim, run } = await withVolume(12, 6, 3);
  const uid = (await settle(sim, run("n0").store.loadVolume("v"))).header.uid;
  const [a, b, c] = run("n0").engine.replicaPeers(`${uid}.1.0`).map((peer) => peer.id);
  const [writer, reader] = [...sim.nodes.keys()].filter((id) => ![a, b, c].includes(id));

  const volume = await settle(sim, run(writer).leases.open("v"));
  await settle(sim, volume.write(0, sectorPattern(1, 0, 2), false));
  await settle(sim, volume.flush());
  // c misses the next write and flush: they are durable on a and b (a write quorum).
  sim.world.cut(writer, c);
  sim.world.cut(c, writer);
  await settle(sim, volume.write(0, sectorPattern(2, 0, 2), false));
  await settle(sim, volume.flush());
  // a and b leave before anything brings c up; members join; the two stay away long.
  sim.leave(a);
  sim.leave(b);
  sim.world.heal();
  for (let i = 0; i < 4; i++) sim.join();
  await sim.world.run(sim.world.now() + (goneAskedGraces + 2) * simClusterDeadGraceMs);

  // The lease moves to another member, which writes the object's other sectors.
  const expected = new Uint8Array(simBlockSize);
  expected.set(sectorPattern(2, 0, 2), 0);
  const other = await settle(sim, run(reader).leases.open("v"));
  const wrote = await settle(sim, other.write(2 * sectorBytes, sectorPattern(4, 2, 2), false))
    .then(() => settle(sim, other.flush())).then(() => true, (error) => error as Error);
  if (wrote !== true) assert.ok(wrote instanceof UnavailableError, String(wrote));
  else expected.set(sectorPattern(4, 2, 2), 2 * sectorBytes);
  const early = await firstBlock(sim, reader);
  if (typeof early !== "string") assert.deepEqual(early, expected, "read while the two are away");
  await back(sim, [a, b], expected, [writer, reader]);
});
