/**
 * Helpers of scripted simulation tests: the production nodes on the simulated
 * network, driven step by step instead of by a fault schedule.
 */
import assert from "node:assert/strict";
import { ClusterSim } from "./cluster_sim.ts";
import { simBlockSize } from "./_cluster_sim_node.ts";

/** Runs the world until `promise` settles (at most `limitMs` of virtual time). */
export async function settle<T>(
  sim: ClusterSim,
  promise: Promise<T>,
  limitMs = 30_000,
): Promise<T> {
  let done = false;
  const watched = promise.finally(() => void (done = true));
  watched.catch(() => {});
  const end = sim.world.now() + limitMs;
  while (!done && sim.world.now() < end) await sim.world.run(sim.world.now() + 5);
  assert.ok(done, "settled within the limit");
  return await watched;
}

/**
 * `nodes` members at R = `replicas` running (no random faults, no healing),
 * and a volume "v" of four blocks created; `run(id)` is a member's runtime.
 */
export async function withVolume(seed: number, nodes: number, replicas: number) {
  const sim = new ClusterSim({ seed, nodes, replicas, volumesOnly: true });
  for (const id of sim.nodes.keys()) sim.start(id);
  await sim.world.run(2_000);
  const run = (id: string) => sim.runtimeOf(id)!;
  await settle(sim, run("n0").store.createVolume({ name: "v", size: 4 * simBlockSize }));
  return { sim, run };
}
