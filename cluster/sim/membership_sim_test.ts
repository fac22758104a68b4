// The membership suite: small clusters (5 to 50 members) in the deterministic simulator.
// Every figure is simulated time, so the assertions are exact and repeatable; each test
// prints its figures and seeds, and any seed replays with `measure*({ seed })` in
// cluster/_sim_scenarios.ts. Bigger runs are in bench/membership_sim.ts.

import assert from "node:assert/strict";
import { membershipConfigDefault, pushPullIntervalFor } from "../membership/_membership_config.ts";
import {
  measureDetection,
  measureDissemination,
  measureFalseDeaths,
  measurePartitionHeal,
  percentile,
  runUntil,
  Views,
} from "./_sim_scenarios.ts";
import { deriveSeed, Simulator } from "./simulator.ts";

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

Deno.test("a killed member is known dead by every member: N=5 median <= 7 s, p95 <= 9 s", () => {
  // 40 runs, each a fresh 5-member cluster losing one random member at a random time.
  const samples = measureDetection({ members: 5, seed: 5, runs: 40 });
  const times = samples.map((s) => s.detectionMs);
  const median = percentile(times, 50);
  const p95 = percentile(times, 95);
  console.log(
    `N=5 kill -> dead for all: median ${seconds(median)}, p95 ${seconds(p95)}, max ${
      seconds(Math.max(...times))
    } (${samples.length} runs, base seed 5; slowest seed ${
      samples.find((s) => s.detectionMs === Math.max(...times))?.seed
    })`,
  );
  assert.ok(median <= 7_000, `median ${median} ms`);
  assert.ok(p95 <= 9_000, `p95 ${p95} ms`);
});

Deno.test("detection at N=20 waits out the pause tolerance, and no more than that needs", () => {
  // Above a handful of members a suspicion lasts at least the pause floor (11 s): this is
  // the price of not declaring a member paused for 10 s dead.
  const samples = measureDetection({ members: 20, seed: 20, runs: 20 });
  const times = samples.map((s) => s.detectionMs);
  console.log(
    `N=20 kill -> dead for all: median ${seconds(percentile(times, 50))}, p95 ${
      seconds(percentile(times, 95))
    } (${samples.length} runs, base seed 20)`,
  );
  assert.ok(percentile(times, 50) >= 11_000, "not before the floor");
  assert.ok(percentile(times, 95) <= 17_000);
});

Deno.test("a member that joins and dies 5 s later is detected as fast as any other", () => {
  // New members enter the current probe round at a random place, as in memberlist, rather
  // than waiting for every node's next round (50 s at N=50).
  const times: number[] = [];
  for (let run = 0; run < 10; run += 1) {
    const sim = new Simulator({ seed: deriveSeed(50, run) });
    const views = new Views(sim, 51);
    sim.bootstrap(50);
    const joiner = sim.addNode({ atMs: 5_000, seeds: [run] });
    sim.run(10_000);
    sim.kill(joiner.index);
    const doneMs = runUntil(sim, () => views.missing(joiner.index, "dead") === 0, 100_000, 10);
    times.push((doneMs ?? Infinity) - 10_000);
  }
  console.log(`N=50 join, kill 5 s later -> dead for all: ${times.map(seconds).join(", ")}`);
  assert.ok(Math.max(...times) <= 20_000);
});

Deno.test("no live member is declared dead at 20% packet loss (240 node-hours, N=20)", () => {
  const result = measureFalseDeaths({ members: 20, seed: 1, hours: 12, lossRate: 0.2 });
  console.log(`20% loss: ${JSON.stringify(result)}`);
  assert.ok(result.suspicions > 0, "the loss is heavy enough to cause suspicions");
  assert.equal(result.falseDeaths, 0);
});

Deno.test("members paused for 2-10 s are suspected, refute, and are never declared dead", () => {
  // Every 20 s, 2 of 20 members stop for a uniform 2-10 s (SIGSTOP, a VM stun, a GC).
  const result = measureFalseDeaths({
    members: 20,
    seed: 2,
    hours: 1.5,
    pauses: { count: 2, minMs: 2_000, maxMs: 10_000, everyMs: 20_000 },
  });
  console.log(`pauses: ${JSON.stringify(result)}`);
  assert.ok(result.pauses >= 500);
  assert.ok(result.suspicions > 0, "paused members are suspected");
  assert.equal(result.falseDeaths, 0);
});

Deno.test("after a 50/50 partition heals, views converge within two push-pull intervals", () => {
  const members = 40;
  const pushPullIntervalMs = pushPullIntervalFor(membershipConfigDefault, members);
  // 90 s apart: each half declares the other dead, and the gossip-to-the-dead window ends.
  const samples = measurePartitionHeal({
    members,
    seed: 3,
    runs: 6,
    partitionMs: 90_000,
    pushPullIntervalMs,
  });
  const times = samples.map((s) => s.healToConvergedMs);
  console.log(
    `partition heal N=${members}: ${times.map(seconds).join(", ")} (push-pull ${
      seconds(pushPullIntervalMs)
    }; seeds ${samples.map((s) => s.seed).join(", ")})`,
  );
  for (const sample of samples) {
    assert.ok(sample.healToConvergedMs <= 2 * pushPullIntervalMs, `seed ${sample.seed}`);
  }
});

Deno.test("a join or a death reaches every member within log2(N) + 3 gossip rounds (p99)", () => {
  // Deaths and joins alternate, 25 s apart. A member that misses a join's gossip (about 1
  // join in 250 at this size: each member relays an update 8 times) learns it from the next
  // push-pull instead, tens of seconds later: that tail is what the p99 allows for.
  const members = 50;
  const samples = [1, 2, 3].flatMap((seed) => measureDissemination({ members, seed, changes: 60 }));
  const rounds = samples.map((s) => s.rounds);
  const bound = Math.log2(members) + 3;
  const p99 = percentile(rounds, 99);
  const beyond = (kind: string) =>
    samples.filter((s) => s.kind === kind && s.rounds > bound).length;
  console.log(
    `dissemination N=${members}: ${samples.length} changes, p50 ${
      percentile(rounds, 50).toFixed(2)
    }, p99 ${p99.toFixed(2)}, max ${Math.max(...rounds).toFixed(2)} rounds (bound ${
      bound.toFixed(2)
    }); beyond the bound: ${beyond("join")} joins, ${beyond("death")} deaths; seeds 1-3`,
  );
  assert.equal(samples.length, 180);
  assert.ok(p99 <= bound, `p99 ${p99}`);
});

/** A bit of everything, with every message JSON round-tripped and its size checked. */
function eventfulRun(seed: number): string {
  const sim = new Simulator({ seed, lossRate: 0.05, checkMessages: true });
  sim.bootstrap(20);
  sim.at(10_000, () => sim.kill(3));
  sim.at(15_000, () => sim.pause(5, 8_000));
  sim.at(
    30_000,
    () => sim.partition([[0, 1, 2, 4, 5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]]),
  );
  sim.at(70_000, () => sim.heal());
  sim.addNode({ atMs: 50_000, seeds: [0] });
  sim.at(60_000, () => sim.leave(7));
  sim.run(120_000);
  return sim.traceHash();
}

Deno.test("the same seed gives a byte-identical trace; another seed another one", () => {
  const first = eventfulRun(11);
  assert.equal(eventfulRun(11), first);
  assert.notEqual(eventfulRun(12), first);
  console.log(`trace hash of seed 11: ${first}`);
});
