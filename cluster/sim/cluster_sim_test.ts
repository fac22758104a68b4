/**
 * Goal: whatever crashes, partitions, isolations, pauses and message faults
 * happen, while members heal and collect garbage, a flushed write reads back
 * from every member until it is overwritten, an acknowledged upload reads back
 * byte-exact until it is deleted, clones and snapshots read what they were
 * made of, no two processes write a volume under one lease epoch, nothing
 * deleted opens again, and metadata stays linearizable.
 * Method: the deterministic simulation of the whole data path
 * (`cluster_sim.ts`: the production ClusterEngine, LeaseManager, Healer, Store
 * with the cluster's garbage collection, and Volume over memory disks and the
 * simulated network) over seeded schedules, 3 to 7 members (growing to 9 with
 * joins; some leave; one dies for good and is replaced), 2 or 3 replicas. A failing seed is printed;
 * `deno task soak --cluster --seed N --trace` replays it with a trace.
 * Regression seeds are in `cluster_sim_seeds_test.ts`.
 */
import assert from "node:assert/strict";
import { AssertionError } from "../../core/assert.ts";
import { CorruptionError, WritesLostError } from "../../core/errors.ts";
import { ReplicaQuorumError } from "../data/_copy_checks.ts";
import { RpcError } from "../transport/rpc_message.ts";
import { wrongFailure } from "./_cluster_sim_meta.ts";
import { ClusterSim, type ClusterSimOptions, clusterSimSettings } from "./cluster_sim.ts";

/** Schedules run in CI (about two minutes on two cores; the soak runs as many as asked). */
const schedulesInCi = 150;

/**
 * Seeds that still find a violation, not yet understood or fixed: each is an
 * open finding, kept out of the assertion so that CI guards every other seed,
 * and checked to be still failing so that the list shrinks when one is fixed.
 * Empty: every seed the soak has run so far is clean.
 */
const knownOpen = new Set<number>([]);

/**
 * Runs seeds `first` to `first + count - 1` with `options(seed)`. A failure is
 * a seed whose violations disagree with `open` (violations where none are
 * known, or a known one clean now), named with `label`; operations and faults
 * are summed, and the largest cluster any schedule grew to kept.
 */
async function runSchedules(
  first: number,
  count: number,
  label: string,
  options: (seed: number) => ClusterSimOptions,
  open: ReadonlySet<number> = new Set(),
) {
  const failures: string[] = [];
  const ops: Record<string, number> = {};
  const faults: Record<string, number> = {};
  let largest = 0;
  for (let seed = first; seed < first + count; seed++) {
    const result = await ClusterSim.run(options(seed));
    for (const [name, n] of Object.entries(result.ops)) ops[name] = (ops[name] ?? 0) + n;
    for (const [name, n] of Object.entries(result.faults)) faults[name] = (faults[name] ?? 0) + n;
    largest = Math.max(largest, result.members);
    const failed = result.violations.length > 0;
    if (failed !== open.has(seed)) {
      const what = failed ? result.violations.slice(0, 3).join("; ") : "clean now";
      failures.push(`seed ${seed}${label === "" ? "" : ` (${label})`}: ${what}`);
    }
  }
  return { failures, ops, faults, largest };
}

Deno.test(`${schedulesInCi} seeded schedules of the whole data path: no violation`, async () => {
  const { failures, ops, faults } = await runSchedules(
    1,
    schedulesInCi,
    "",
    (seed) => clusterSimSettings(seed),
    knownOpen,
  );
  console.log(`faults ${JSON.stringify(faults)}\noperations ${JSON.stringify(ops)}`);
  assert.deepEqual(failures, []);
  for (const fault of ["crash", "partition", "isolate", "pause", "loss", "duplicate"]) {
    assert.ok((faults[fault] ?? 0) > 0, `the schedules injected ${fault}`);
  }
  for (const op of ["write ok", "flush ok", "read ok", "snapshot ok", "clone ok", "delete ok"]) {
    assert.ok((ops[op] ?? 0) > 0, `the clients did ${op}`);
  }
  const catalogue = ["upload ok", "image-read ok", "image-clone ok", "image-delete ok"];
  catalogue.push("snapshot-read ok", "snapshot-delete ok", "gc ok");
  for (const op of [...catalogue, "gc blocks deleted", "gc objects deleted"]) {
    assert.ok((ops[op] ?? 0) > 0, `the clients did ${op}`);
  }
});

/** Schedules in CI whose new volumes are read through several members before their first write. */
const bootSchedulesInCi = 40;

Deno.test(`${bootSchedulesInCi} schedules where fresh volumes are read before their first write: no violation`, async () => {
  const { failures, ops } = await runSchedules(5001, bootSchedulesInCi, "bootReads", (seed) => ({
    ...clusterSimSettings(seed),
    bootReads: true,
  }));
  console.log(`operations ${JSON.stringify(ops)}`);
  assert.deepEqual(failures, []);
  assert.ok((ops["boot-read ok"] ?? 0) > 0, "the clients read fresh volumes");
  assert.ok((ops["idle reads (last incarnations)"] ?? 0) > 0, "members served reads from readers");
});

/** Schedules in CI whose clients send reads as several requests at once. */
const burstSchedulesInCi = 20;

Deno.test(`${burstSchedulesInCi} schedules where reads go as several requests at once: no violation`, async () => {
  const { failures, ops } = await runSchedules(6001, burstSchedulesInCi, "readBursts", (seed) => ({
    ...clusterSimSettings(seed),
    readBursts: true,
  }));
  assert.deepEqual(failures, []);
  assert.ok((ops["read-burst ok"] ?? 0) > 0, "the clients read in bursts");
  assert.ok((ops["read ok"] ?? 0) > 0, "the clients read");
});

/** Every other schedule with members joining and leaving (placements differ meanwhile). */
const movingEveryOther = (seed: number) => ({ joins: seed % 2 === 0, leaves: seed % 2 === 0 });

/** Schedules in CI where members give up leases unused there when read elsewhere. */
const idleSchedulesInCi = 30;

Deno.test(`${idleSchedulesInCi} schedules where unused leases are given up when read elsewhere: no violation`, async () => {
  const { failures, ops } = await runSchedules(7001, idleSchedulesInCi, "idleRelease", (seed) => ({
    ...clusterSimSettings(seed),
    idleRelease: true,
    ...movingEveryOther(seed),
  }));
  console.log(`operations ${JSON.stringify(ops)}`);
  assert.deepEqual(failures, []);
  assert.ok((ops["leases given up unused (last incarnations)"] ?? 0) > 0, "members gave leases up");
  assert.ok((ops["idle reads (last incarnations)"] ?? 0) > 0, "members served reads from readers");
  assert.ok((ops["write ok"] ?? 0) > 0, "the clients wrote");
});

/** Schedules in CI where a replica journal's sync takes time, as an fdatasync does. */
const slowSyncSchedulesInCi = 30;

Deno.test(`${slowSyncSchedulesInCi} schedules where changes land while a journal syncs: no violation`, async () => {
  // A flush answered stamps its sync did not cover (session 39): the memory disk's syncs
  // ended at the call, so no schedule could land a change inside one.
  const { failures, ops } = await runSchedules(
    9501,
    slowSyncSchedulesInCi,
    "slowSyncs",
    (seed) => ({
      ...clusterSimSettings(seed),
      slowSyncs: true,
      ...movingEveryOther(seed),
    }),
  );
  assert.deepEqual(failures, []);
  assert.ok((ops["write ok"] ?? 0) > 0, "the clients wrote");
  assert.ok((ops["flush ok"] ?? 0) > 0, "the clients flushed");
  assert.ok(
    (ops["journal appends during a sync (last incarnations)"] ?? 0) > 0,
    "changes landed while a journal synced",
  );
});

/** Schedules in CI where members join the running cluster in batches (up to 9 members). */
const joinSchedulesInCi = 60;

Deno.test(`${joinSchedulesInCi} schedules where members join in batches: no violation`, async () => {
  const { failures, faults, largest } = await runSchedules(
    9001,
    joinSchedulesInCi,
    "joins",
    (seed) => ({ ...clusterSimSettings(seed), joins: true }),
  );
  console.log(`faults ${JSON.stringify(faults)}; largest cluster ${largest} members`);
  assert.deepEqual(failures, []);
  assert.ok((faults.join ?? 0) > 0, "members joined");
  assert.equal(largest, 9, "a cluster grew to 9 members");
});

/** Schedules in CI where members also stop gracefully (half come back). */
const leaveSchedulesInCi = 40;

/**
 * Open findings among them (see knownOpen). Empty: seed 9130 (a member that
 * left and came back kept a reader of a volume another member then took) is
 * clean since the taker waits for readers gossip calls left (docs/cluster.md).
 */
const knownOpenWithLeaves = new Set<number>([]);

Deno.test(`${leaveSchedulesInCi} schedules where members join and leave: no violation`, async () => {
  const { failures, faults } = await runSchedules(
    9101,
    leaveSchedulesInCi,
    "joins, leaves",
    (seed) => ({ ...clusterSimSettings(seed), joins: true, leaves: true }),
    knownOpenWithLeaves,
  );
  console.log(`faults ${JSON.stringify(faults)}`);
  assert.deepEqual(failures, []);
  assert.ok((faults.leave ?? 0) > 0 && (faults.join ?? 0) > 0, "members joined and left");
});

/** Schedules in CI where a member dies for good and a new one takes its place. */
const replacementSchedulesInCi = 30;

Deno.test(`${replacementSchedulesInCi} schedules where a member is replaced: no violation`, async () => {
  const { failures, faults } = await runSchedules(
    9201,
    replacementSchedulesInCi,
    "replacements",
    (seed) => ({ ...clusterSimSettings(seed), replacements: true }),
  );
  const replaced = faults.replace ?? 0;
  assert.deepEqual(failures, []);
  assert.ok(replaced >= replacementSchedulesInCi / 2, `members replaced in ${replaced} schedules`);
});

/** Schedules in CI where the member that died for good is then declared lost by an operator. */
const lostSchedulesInCi = 15;

Deno.test(`${lostSchedulesInCi} schedules where a member replaced under churn is declared lost: no violation`, async () => {
  // cluster/lost_members.ts: the declaration goes through the metadata while members join,
  // leave and fail; an object with a replica on the lost member and one on a member only
  // away still waits for that one.
  const { failures, faults } = await runSchedules(
    9301,
    lostSchedulesInCi,
    "declare lost",
    (seed) => ({
      ...clusterSimSettings(seed),
      joins: true,
      leaves: true,
      replacements: true,
      declareLost: true,
    }),
  );
  const declared = faults["declare lost"] ?? 0;
  assert.deepEqual(failures, []);
  assert.ok(declared >= lostSchedulesInCi / 2, `members declared lost in ${declared} schedules`);
});

Deno.test("a seed of the whole data path replays exactly", async () => {
  const first = await ClusterSim.run({ ...clusterSimSettings(4242), chaosMs: 10_000 });
  const second = await ClusterSim.run({ ...clusterSimSettings(4242), chaosMs: 10_000 });
  assert.equal(first.digest, second.digest);
  assert.equal(first.events, second.events);
  const other = await ClusterSim.run({ ...clusterSimSettings(4243), chaosMs: 10_000 });
  assert.notEqual(first.digest, other.digest);
});

Deno.test("the checker flags a client failing with a bug's error or with corruption nobody gave up", () => {
  assert.equal(wrongFailure(new WritesLostError(["uid.1.0"]), false), null);
  assert.equal(wrongFailure(new ReplicaQuorumError("too few replicas"), false), null);
  assert.match(wrongFailure(new TypeError("x is undefined"), false)!, /TypeError/);
  assert.match(wrongFailure(new AssertionError("an invariant"), false)!, /AssertionError/);
  assert.match(wrongFailure(new Error("oops"), true)!, /Error/);
  const remote = new RpcError("peer failed", false, { remoteName: "RangeError" });
  assert.match(wrongFailure(remote, false)!, /RangeError/);
  assert.equal(wrongFailure(new RpcError("peer away", true), false), null);
  assert.match(wrongFailure(new CorruptionError("bad block"), false)!, /CorruptionError/);
  // A member declared lost gives its copies up: what only it held is gone.
  assert.equal(wrongFailure(new CorruptionError("bad block"), true), null);
});
