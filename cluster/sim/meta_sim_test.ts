/**
 * Goal: no acknowledged metadata change is ever lost, forked, rolled back or
 * resurrected, whatever joins, leaves, deaths, restarts, partitions, pauses,
 * message faults and clock jumps happen, and members agree once faults end.
 * Method: the deterministic simulation (`meta_sim.ts`) of the production
 * metadata code over seeded fault schedules, clusters of 3 to 9 members at the
 * start (joins grow them to 14), checked by `_meta_checker.ts`. A failing seed
 * is printed; `deno task soak --seed N --trace` replays it with a trace.
 */
import assert from "node:assert/strict";
import { MetaSim } from "./meta_sim.ts";
import { checkHistory, type OpRecord } from "./_meta_checker.ts";

/** Schedules run in CI (the soak runs as many as asked). */
const schedulesInCi = 300;

Deno.test("300 seeded schedules: no acknowledged metadata change is lost", async () => {
  const failures: string[] = [];
  const faults: Record<string, number> = {};
  let acknowledged = 0;
  let reconfigurations = 0;
  for (let seed = 1; seed <= schedulesInCi; seed++) {
    const result = await MetaSim.run({ seed, nodes: 3 + seed % 7, chaosMs: 30_000 });
    for (const [name, count] of Object.entries(result.faults)) {
      faults[name] = (faults[name] ?? 0) + count;
    }
    acknowledged += result.ops.acknowledged;
    reconfigurations += result.reconfigurations;
    if (result.violations.length > 0) {
      failures.push(`seed ${seed}: ${result.violations.slice(0, 3).join("; ")}`);
    }
  }
  console.log(
    `${schedulesInCi} schedules, ${acknowledged} acknowledged operations, ` +
      `${reconfigurations} changes of voters, faults ${JSON.stringify(faults)}`,
  );
  assert.deepEqual(failures, []);
  assert.ok(reconfigurations > schedulesInCi, "voters changed under faults");
  for (const fault of ["crash", "kill", "leave", "join", "partition", "isolate", "pause"]) {
    assert.ok((faults[fault] ?? 0) > 0, `the schedules injected ${fault}`);
  }
});

Deno.test("a seed replays exactly", async () => {
  const first = await MetaSim.run({ seed: 4242, nodes: 5, chaosMs: 15_000 });
  const second = await MetaSim.run({ seed: 4242, nodes: 5, chaosMs: 15_000 });
  assert.equal(first.digest, second.digest);
  assert.equal(first.events, second.events);
  const other = await MetaSim.run({ seed: 4243, nodes: 5, chaosMs: 15_000 });
  assert.notEqual(first.digest, other.digest);
});

/** An operation record for the checker's own tests. */
function op(fields: Partial<OpRecord>): OpRecord {
  return {
    node: "n00",
    key: "volume/a",
    kind: "write",
    startMs: 0,
    endMs: 1,
    version: 1,
    tag: "w1",
    error: null,
    ...fields,
  };
}

Deno.test("the checker finds forks, rollbacks, lost writes and divergence", () => {
  const final = (version: number, tag: string, node = "n00") => ({
    node,
    key: "volume/a",
    version,
    tag,
    error: null,
  });
  assert.deepEqual(checkHistory([op({})], [final(1, "w1")]), []);
  const fork = checkHistory([op({}), op({ tag: "w2", startMs: 2, endMs: 3 })], [final(1, "w1")]);
  assert.match(fork[0], /^fork: volume\/a@1/);
  const rollback = checkHistory(
    [op({}), op({ kind: "read", version: 0, tag: "null", startMs: 5, endMs: 6 })],
    [final(1, "w1")],
  );
  assert.match(rollback[0], /^rollback: read of volume\/a/);
  assert.match(checkHistory([op({ version: 2, tag: "w2" })], [final(1, "w1")])[0], /^lost: /);
  const diverged = checkHistory([op({})], [final(1, "w1"), final(2, "w9", "n01")]);
  assert.ok(diverged.some((line) => line.startsWith("divergence: ")));
});
