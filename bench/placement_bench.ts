/**
 * Placement: the cost of one `Placement.replicas()` call for 5, 100 and 1000 members
 * (R = 3), as a ratio to hashing the name alone (tinybench), then a movement and balance
 * report over a big cluster (100 members, 10^6 names by default): the share of replicas
 * that a join and a leave move, replicas per member against the mean, and each weight's
 * share, with and without zones.
 *
 * Run: `deno run -A bench/placement_bench.ts [--names N] [--members N]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Bench } from "tinybench";
import { murmur3String128 } from "../cluster/placement/_hash64.ts";
import { Placement, type PlacementMember } from "../cluster/placement/mod.ts";
import { generateNames } from "../cluster/placement/_test_names.ts";

/** Names placed per tinybench iteration, so the timer's own cost is spread thin. */
const callsPerIteration = 64;
/** Distinct names the timed calls cycle through. */
const timedNames = 4096;
/** Batches each task runs before any is timed. */
const warmupRounds = 50;
/** Tinybench time budget per task. */
const taskTimeMs = 1000;
/** Replicas per name in every measurement. */
const replicas = 3;

function makeMembers(count: number, zones: number, weightOf = (_: number) => 1): PlacementMember[] {
  return Array.from({ length: count }, (_, index) => ({
    id: `node-${index}`,
    weight: weightOf(index),
    zone: zones > 0 ? `zone-${index % zones}` : null,
  }));
}

/** Microseconds per call of each task, from tinybench's mean batch latency. */
async function measureCallCost(): Promise<void> {
  const names = generateNames(timedNames, 1);
  const out = new Uint32Array(4);
  let cursor = 0;
  const batch = (call: (name: string) => void) => () => {
    for (let call_ = 0; call_ < callsPerIteration; call_++) {
      call(names[cursor++ & (timedNames - 1)]);
    }
  };
  const tasks: [string, () => void][] = [
    ["hash the name (reference)", batch((name) => murmur3String128(name, 0, out))],
  ];
  for (const size of [5, 100, 1000]) {
    for (const zones of [0, 3]) {
      const placement = new Placement(makeMembers(size, zones, (index) => 1 + (index % 4)));
      const label = `replicas(name, ${replicas}), N=${size}${zones ? `, ${zones} zones` : ""}`;
      tasks.push([label, batch((name) => placement.replicas(name, replicas))]);
    }
  }
  const small = makeMembers(5, 0);
  tasks.push([
    "new Placement(5 members) per call",
    batch((name) => {
      new Placement(small).replicas(name, replicas);
    }),
  ]);
  // Run every task before timing any, so the JIT has seen all member counts and zone
  // layouts and the first task timed does not pay for the others' deoptimizations.
  for (const [, task] of tasks) for (let round = 0; round < warmupRounds; round++) task();
  const bench = new Bench({ time: taskTimeMs, warmupTime: 250, throws: true });
  for (const [label, task] of tasks) bench.add(label, task);
  await bench.run();
  const microseconds = new Map<string, number>();
  for (const task of bench.tasks) {
    const result = task.result;
    if (result.state !== "completed") {
      throw new Error(`Cannot report ${task.name}: benchmark task ended ${result.state}`);
    }
    microseconds.set(task.name, (result.latency.mean * 1000) / callsPerIteration);
  }
  const reference = microseconds.get("hash the name (reference)")!;
  console.log(`\nCost of one call (mean of batches of ${callsPerIteration}; weights 1..4)`);
  console.table([...microseconds].map(([task, perCall]) => ({
    task,
    "µs/call": Number(perCall.toFixed(3)),
    "ratio to name hash": Number((perCall / reference).toFixed(1)),
  })));
}

/** Every name's replicas as member indices (into `ids`), `replicas` per name. */
function placeAll(placement: Placement, names: string[], ids: Map<string, number>): Int32Array {
  const placed = new Int32Array(names.length * replicas);
  for (let index = 0; index < names.length; index++) {
    const chosen = placement.replicas(names[index], replicas);
    for (let slot = 0; slot < replicas; slot++) {
      placed[index * replicas + slot] = ids.get(chosen[slot])!;
    }
  }
  return placed;
}

interface Movement {
  /** Share of all (name, replica) assignments that changed member. */
  moved: number;
  /** Assignments that moved between two members that both stayed: must be 0. */
  betweenStayers: number;
}

function compare(before: Int32Array, after: Int32Array, changed: number): Movement {
  let moved = 0, betweenStayers = 0;
  for (let base = 0; base < before.length; base += replicas) {
    for (let slot = 0; slot < replicas; slot++) {
      const member = after[base + slot];
      let kept = false;
      for (let old = 0; old < replicas; old++) kept ||= before[base + old] === member;
      if (kept) continue;
      moved++;
      if (member !== changed) {
        // A leave: the replica must come from the member that left.
        let fromLeaver = false;
        for (let old = 0; old < replicas; old++) fromLeaver ||= before[base + old] === changed;
        if (!fromLeaver) betweenStayers++;
      }
    }
  }
  return { moved: moved / before.length, betweenStayers };
}

function loadRatios(placed: Int32Array, members: number): { max: number; min: number } {
  const load = new Float64Array(members);
  for (const member of placed) load[member]++;
  const mean = placed.length / members;
  let max = 0, min = Infinity;
  for (const count of load) max = Math.max(max, count / mean), min = Math.min(min, count / mean);
  return { max, min };
}

/** Join and leave of one member in a cluster of `size`; balance of the base placement. */
function reportMovement(names: string[], size: number, zones: number): Record<string, string> {
  const members = makeMembers(size + 1, zones);
  const ids = new Map(members.map((member, index) => [member.id, index]));
  const base = placeAll(new Placement(members.slice(0, size)), names, ids);
  const joined = placeAll(new Placement(members), names, ids);
  const leaver = 37 % size;
  const left = placeAll(
    new Placement(members.filter((_, index) => index !== leaver && index < size)),
    names,
    ids,
  );
  const join = compare(base, joined, size);
  const leave = compare(base, left, leaver);
  const { max, min } = loadRatios(base, size);
  return {
    cluster: `N=${size}, R=${replicas}, ${zones ? `${zones} zones` : "no zones"}`,
    "join moved × N+1": (join.moved * (size + 1)).toFixed(3),
    "leave moved × N": (leave.moved * size).toFixed(3),
    "moved between stayers": String(join.betweenStayers + leave.betweenStayers),
    "max/mean": max.toFixed(4),
    "min/mean": min.toFixed(4),
  };
}

/** Share of replicas that members of each weight hold, against weight / Σ weight. */
function reportWeights(
  names: string[],
  size: number,
  replicaCount: number,
): Record<string, string> {
  const members = makeMembers(size, 0, (index) => 1 + (index % 4));
  const placement = new Placement(members);
  const byWeight = [0, 0, 0, 0];
  for (const name of names) {
    for (const id of placement.replicas(name, replicaCount)) byWeight[Number(id.slice(5)) % 4]++;
  }
  const totalWeight = members.reduce((sum, member) => sum + member.weight, 0);
  const row: Record<string, string> = { cluster: `N=${size}, R=${replicaCount}, weights 1..4` };
  for (let weight = 1; weight <= 4; weight++) {
    const target = (weight * Math.ceil(size / 4 - (weight - 1) / 4)) / totalWeight;
    const share = byWeight[weight - 1] / (names.length * replicaCount);
    row[`w${weight} share/target`] = (share / target).toFixed(4);
  }
  return row;
}

async function main(): Promise<void> {
  const args = parseArgs({ options: { names: { type: "string" }, members: { type: "string" } } });
  const nameCount = Number(args.values.names ?? 1_000_000);
  const size = Number(args.values.members ?? 100);
  if (!Number.isInteger(nameCount) || nameCount < 1 || !Number.isInteger(size) || size < 4) {
    throw new RangeError(`Cannot run: --names ${nameCount} and --members ${size} must be integers`);
  }
  await measureCallCost();

  const startMs = performance.now();
  const names = generateNames(nameCount, 2);
  console.log(`\nMovement and balance over ${nameCount} names (a join adds node-${size};`);
  console.log(`a leave removes node-${37 % size}; "× N" = moved share × members, ideal 1)`);
  console.table([reportMovement(names, size, 0), reportMovement(names, size, 4)]);
  console.log("\nWeighted shares (ideal 1; with R > 1 heavy members fall short, see placement.ts)");
  console.table([
    reportWeights(names, 4, 1),
    reportWeights(names, size, 1),
    reportWeights(names, size, 3),
    reportWeights(names, 4, 3),
  ]);
  console.log(`report took ${((performance.now() - startMs) / 1000).toFixed(1)} s`);
}

if (import.meta.main) await main();
