/**
 * Goal: reads never trust a view that calls a running member gone. Method: the
 * seeds of the whole-cluster simulation that found it (as in
 * `cluster_sim_seeds_test.ts`: each failed with the fix reverted alone). A look
 * that must hear every member that may hold an object's newest copy now asks the
 * members gossip called dead or gone lately too (data/_replica_copies.ts,
 * stampsElsewhere), without waiting for those that do not answer.
 */
import assert from "node:assert/strict";
import { ClusterSim, clusterSimSettings } from "./cluster_sim.ts";

const withChurn = { joins: true, leaves: true, replacements: true };

Deno.test("seed 930578 (boot reads): a read that sees the lease holder dead still asks it", async () => {
  // A member that still saw the holder and one other member dead after their cut healed
  // read the volume's flushed state with a strict look over the members it saw live; the
  // two it skipped held the flushed writes, and it served an older copy.
  const result = await ClusterSim.run({ ...clusterSimSettings(930578), bootReads: true });
  assert.deepEqual(result.violations, []);
});

Deno.test("seed 851017 (joins, leaves, replacements): a read asks members back from a restart it has not heard of", async () => {
  // A holder flushed an object on itself and one other member, and both left; back, they
  // were still seen gone by a reader whose replicas were new to the object, and the strict
  // look skipped them and served an older copy.
  const result = await ClusterSim.run({ ...clusterSimSettings(851017), ...withChurn });
  assert.deepEqual(result.violations, []);
});

Deno.test("seed 901200 (joins, leaves, replacements): a snapshot of a churning cluster reads what was flushed", async () => {
  const result = await ClusterSim.run({ ...clusterSimSettings(901200), ...withChurn });
  assert.deepEqual(result.violations, []);
});
