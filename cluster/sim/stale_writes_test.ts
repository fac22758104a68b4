/**
 * Goal: what a node acknowledged under a lease it lost is never reported
 * durable unless it is. A write still under way from an instance the node
 * dropped (its lease was taken over) cannot cost the node the lease it took
 * again since, nor pass the fences under the new epoch: storage refuses it, and
 * the refusal speaks of the old epoch only. Seed 10123464 with joins, leaves and
 * replacements: a contending write held n3's instance from its epoch-2 lease
 * while n5 took the lease over and n3 took it back at epoch 4; refused at last
 * as an epoch-2 write, it made n3 drop its epoch-4 lease with an acknowledged
 * write unflushed. The next flush at n3 passed (the record still named n3), and
 * a read elsewhere served the record's older map: a stale read of a flushed
 * write. And a connection open when its node's lease was taken by force fails
 * its flushes: what the node acknowledged unflushed went with its instance.
 * Method: a scripted ClusterSim (the production node on the simulated network,
 * no random faults); a member the others see dead while it runs, and replicas
 * holding back epoch-1 changes until the lease has moved away and back.
 */
import assert from "node:assert/strict";
import { ClusterSim } from "./cluster_sim.ts";
import { settle, withVolume } from "./_scripted.ts";
import { sectorBytes, sectorPattern } from "./_cluster_sim_model.ts";
import { simBlockSize } from "./_cluster_sim_node.ts";
import type { RpcMessage } from "../transport/mod.ts";
import { LeaseLostError } from "../../core/mod.ts";

/** Four members (R = 3) running, and volume "v" created; `run(id)` is a member's runtime. */
function fourMembers(seed: number) {
  return withVolume(seed, 4, 3);
}

/** The others see `id` dead while it runs (a cut off or paused host), `viewer` among them. */
async function seenDeadBy(sim: ClusterSim, id: string, viewer: string): Promise<void> {
  sim.seenDead(id, true);
  while (sim.runtimeOf(viewer)!.engine.member(id)?.status !== "dead") {
    await sim.world.run(sim.world.now() + 5);
  }
}

/** `taker` takes the lease of "v" from `holder` (seen dead), which then hears of it. */
async function takeOver(sim: ClusterSim, holder: string, taker: string): Promise<void> {
  await settle(sim, sim.runtimeOf(taker)!.leases.acquire("v"));
  sim.seenDead(holder, false);
  await sim.world.run(sim.world.now() + 100);
}

Deno.test("a stale write refused after the lease came back keeps the lease, and what it acknowledged", async () => {
  const { sim, run } = await fourMembers(1);

  // Changes written under epoch 1 wait at every replica until `open()`.
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  let gating = false;
  let held = 0;
  for (const id of sim.nodes.keys()) {
    const methods = run(id).methods;
    const change = methods["object.changes"];
    methods["object.changes"] = async (request: RpcMessage) => {
      const changes = request.header.changes as { epoch: number }[];
      if (gating && changes.some((one) => one.epoch === 1)) {
        held++;
        await gate;
      }
      return await change(request);
    };
  }

  // n1 takes the lease (epoch 1); the others come to see it dead; its write waits at the
  // replicas meanwhile.
  const first = await settle(sim, run("n1").leases.open("v"));
  await settle(sim, first.write(0, sectorPattern(1, 0, 2), false));
  await settle(sim, first.flush());
  await seenDeadBy(sim, "n1", "n2");
  gating = true;
  // Two writes of one object through n1's instance: the first waits at the replicas, the
  // second for the first (one change of an object at a time).
  const stale = [
    first.write(2 * sectorBytes, sectorPattern(3, 2, 2), false),
    first.write(0, sectorPattern(4, 0, 2), false),
  ];
  for (const write of stale) write.catch(() => {});
  while (held === 0) await sim.world.run(sim.world.now() + 1);

  // n2 takes it over, and n1 takes it back (epoch 3).
  await takeOver(sim, "n1", "n2");
  assert.equal(run("n1").leases.holds("v"), false, "n1 was told it lost the lease");
  // A block the stale write does not hold: a new object, which the map names once flushed.
  const at = simBlockSize, sector = at / sectorBytes;
  const second = await settle(sim, run("n1").leases.open("v"));
  await settle(sim, second.write(at, sectorPattern(2, sector, 2), false));
  assert.equal(
    run("n1").leases.epochOf((await settle(sim, run("n1").store.loadVolume("v"))).header.uid),
    3,
  );

  // The first stale write reaches storage now and is refused (epoch 1); the second finds
  // its instance's epoch gone (it would pass the fences under epoch 3).
  open();
  for (const write of stale) await assert.rejects(settle(sim, write), LeaseLostError);
  assert.equal(run("n1").leases.holds("v"), true, "the refusal of an epoch-1 write keeps epoch 3");
  await settle(sim, second.flush());

  // Read elsewhere: what the flush made durable, and nothing of the stale writes.
  const into = new Uint8Array(2 * simBlockSize);
  const reader = await settle(sim, run("n3").leases.open("v"));
  await settle(sim, reader.read({ offset: 0, length: into.length }, into), 20_000);
  const expected = new Uint8Array(into.length);
  expected.set(sectorPattern(1, 0, 2), 0);
  expected.set(sectorPattern(2, sector, 2), at);
  assert.deepEqual(into, expected);
});

Deno.test("a flush through a connection open when the lease was taken by force fails", async () => {
  const { sim, run } = await fourMembers(2);
  const writer = await settle(sim, run("n1").leases.open("v"));
  const other = await settle(sim, run("n1").leases.open("v")); // a second connection (multi-conn)
  await settle(sim, writer.write(0, sectorPattern(1, 0, 2), false));
  await settle(sim, writer.flush());
  // Acknowledged, not flushed: a copy-up, whose map only n1's instance holds.
  await settle(sim, writer.write(simBlockSize, sectorPattern(2, 4, 2), false));

  // n2 takes the lease over (n1 seen dead, as a host paused for longer than the grace is),
  // and n1 hears of it when it runs again.
  await seenDeadBy(sim, "n1", "n2");
  await takeOver(sim, "n1", "n2");
  assert.equal(run("n1").leases.holds("v"), false, "n1 was told it lost the lease");

  // The write is gone with n1's instance: no flush open before the loss may pass.
  const into = new Uint8Array(2 * simBlockSize);
  await settle(
    sim,
    (await settle(sim, run("n3").leases.open("v"))).read(
      { offset: 0, length: into.length },
      into,
    ),
  );
  const expected = new Uint8Array(into.length);
  expected.set(sectorPattern(1, 0, 2), 0);
  assert.deepEqual(into, expected, "the takeover kept the flushed write, not the other");
  await assert.rejects(settle(sim, writer.flush()), LeaseLostError);
  await assert.rejects(settle(sim, other.flush()), LeaseLostError);
  // A connection opened since flushes as before.
  await settle(sim, (await settle(sim, run("n1").leases.open("v"))).flush());
});
