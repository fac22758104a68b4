/**
 * `deno task soak`: runs seeded schedules of the metadata simulation
 * (`cluster/sim/meta_sim.ts`) and reports how many ran clean, the mix of
 * faults, and every failing seed. `--seed N --trace` replays one seed and
 * prints what happened (rounds, installs, faults, operations).
 *
 * With `--cluster`, the same for the whole data path (`cluster/sim/cluster_sim.ts`):
 * engine, leases, volumes over memory disks, 3–7 members, 2 or 3 replicas.
 *
 *   deno task soak --schedules 100000 [--from 1] [--chaos-ms 40000]
 *   deno task soak --seed 27 --trace
 *   deno task soak --cluster --schedules 1000 [--chaos-ms 20000]
 *   deno task soak --cluster --seed 6 --trace
 *   deno task soak --cluster --boot-reads ...   (new volumes are read before their first write)
 *   deno task soak --cluster --read-bursts ...  (reads go as several requests at once)
 *   deno task soak --cluster --idle-release ... (members give up leases unused there when read elsewhere)
 *   deno task soak --cluster --slow-syncs ...   (a replica journal's sync takes 1-3 ms; changes land meanwhile)
 *   deno task soak --cluster --joins ...        (members join in batches of 1-3, up to 9)
 *   deno task soak --cluster --leaves ...       (members stop gracefully, half come back)
 *   deno task soak --cluster --replacements ... (one member dies for good, a new one replaces it)
 *   deno task soak --cluster --seed 6 --trace --trace-objects UID   (that volume's object calls too)
 */
import { parseArgs } from "node:util";
import { ClusterSim, clusterSimSettings, MetaSim } from "../cluster/sim/mod.ts";

const usage = `usage: deno task soak [--cluster] [options]
  --schedules N       schedules to run (default 1000), seeds --from S (default 1) on
  --seed N            replay one seed; with --trace, print what happened
  --trace-objects X   (--cluster --seed) trace every call naming X (an object, block or key)
  --chaos-ms MS       length of the fault phase of each schedule
  --cluster           the whole data path instead of the metadata alone, with:
  --boot-reads        new volumes are read before their first write
  --read-bursts       a third of the reads go as several requests at once
  --idle-release      members give up leases unused there when read elsewhere
  --slow-syncs        a replica journal's sync takes 1-3 ms; changes land while it runs
  --joins             members join in batches of 1-3, up to 9
  --leaves            members stop gracefully, half come back
  --replacements      one member dies for good, a new one replaces it
  --declare-lost      (with --replacements) an operator then declares it lost`;

let parsed;
try {
  parsed = parseArgs({ args: Deno.args, options: soakOptions() });
} catch (error) {
  console.error(`${(error as Error).message}\n${usage}`);
  Deno.exit(2);
}
const { values } = parsed;
if (values.help) {
  console.log(usage);
  Deno.exit(0);
}

/** The options `deno task soak` takes (see `usage`). */
function soakOptions() {
  return {
    help: { type: "boolean", default: false, short: "h" },
    schedules: { type: "string", default: "1000" },
    from: { type: "string", default: "1" },
    seed: { type: "string" },
    trace: { type: "boolean", default: false },
    cluster: { type: "boolean", default: false },
    "chaos-ms": { type: "string" },
    "boot-reads": { type: "boolean", default: false },
    "read-bursts": { type: "boolean", default: false },
    "idle-release": { type: "boolean", default: false },
    "slow-syncs": { type: "boolean", default: false },
    joins: { type: "boolean", default: false },
    leaves: { type: "boolean", default: false },
    replacements: { type: "boolean", default: false },
    "declare-lost": { type: "boolean", default: false },
    "trace-objects": { type: "string" },
  } as const;
}
if (values.cluster) await soakCluster();
const chaosMs = Number(values["chaos-ms"] ?? "40000");
/** Members at the start for a seed: 3 to 9, as in CI. */
const nodesOf = (seed: number) => 3 + seed % 7;

if (values.seed !== undefined) {
  const seed = Number(values.seed);
  const lines: string[] = [];
  const result = await MetaSim.run({
    seed,
    nodes: nodesOf(seed),
    chaosMs,
    trace: values.trace ? (line) => lines.push(line) : undefined,
  });
  for (const line of lines) console.log(line);
  console.log(JSON.stringify({ ...result, violations: result.violations }, null, 1));
  Deno.exit(result.violations.length === 0 ? 0 : 1);
}

const from = Number(values.from);
const count = Number(values.schedules);
const faults: Record<string, number> = {};
const failed: string[] = [];
let acknowledged = 0, reconfigurations = 0, events = 0;
const started = performance.now();
for (let seed = from; seed < from + count; seed++) {
  const result = await MetaSim.run({ seed, nodes: nodesOf(seed), chaosMs });
  addFaults(faults, result.faults);
  acknowledged += result.ops.acknowledged;
  reconfigurations += result.reconfigurations;
  events += result.events;
  if (result.violations.length > 0) {
    failed.push(`seed ${seed}: ${result.violations[0]}`);
    console.error(`FAILED seed ${seed} (replay: deno task soak --seed ${seed} --trace)`);
    for (const violation of result.violations.slice(0, 5)) console.error(`  ${violation}`);
  }
  const done = seed - from + 1;
  if (done % 100 === 0 || done === count) {
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `${done}/${count} schedules, ${
        done - failed.length
      } clean, ${acknowledged} acknowledged ops, ` +
        `${reconfigurations} voter changes, ${events} events, ${seconds.toFixed(0)} s`,
    );
  }
}
console.log(`faults injected: ${JSON.stringify(faults)}`);
console.log(
  `${count - failed.length} of ${count} schedules clean (seeds ${from}..${from + count - 1})`,
);
Deno.exit(failed.length === 0 ? 0 : 1);

/** `--cluster`: schedules of the whole data path, or one seed replayed. */
async function soakCluster(): Promise<never> {
  const chaosMs = Number(values["chaos-ms"] ?? "20000");
  const modes = {
    bootReads: values["boot-reads"],
    readBursts: values["read-bursts"],
    idleRelease: values["idle-release"],
    slowSyncs: values["slow-syncs"],
    joins: values.joins,
    leaves: values.leaves,
    replacements: values.replacements,
    declareLost: values["declare-lost"],
  };
  if (values.seed !== undefined) {
    const lines: string[] = [];
    const result = await ClusterSim.run({
      ...clusterSimSettings(Number(values.seed), chaosMs),
      ...modes,
      traceObjects: values["trace-objects"],
      trace: values.trace ? (line) => lines.push(line) : undefined,
    });
    for (const line of lines) console.log(line);
    console.log(JSON.stringify(result, null, 1));
    Deno.exit(result.violations.length === 0 ? 0 : 1);
  }
  const from = Number(values.from);
  const count = Number(values.schedules);
  const failed: number[] = [];
  const faults: Record<string, number> = {};
  const started = performance.now();
  for (let seed = from; seed < from + count; seed++) {
    const result = await ClusterSim.run({ ...clusterSimSettings(seed, chaosMs), ...modes });
    addFaults(faults, result.faults);
    if (result.violations.length > 0) {
      failed.push(seed);
      console.error(
        `FAILED seed ${seed} (replay: deno task soak --cluster${replayFlags()} --seed ${seed} --trace)`,
      );
      for (const violation of result.violations.slice(0, 5)) console.error(`  ${violation}`);
    }
    const done = seed - from + 1;
    if (done % 100 === 0 || done === count) {
      const seconds = ((performance.now() - started) / 1000).toFixed(0);
      console.log(`${done}/${count} schedules, ${done - failed.length} clean, ${seconds} s`);
    }
  }
  console.log(`faults injected: ${JSON.stringify(faults)}`);
  console.log(
    `${count - failed.length} of ${count} schedules clean (seeds ${from}..${from + count - 1})`,
  );
  Deno.exit(failed.length === 0 ? 0 : 1);
}

/** Adds one schedule's count of each fault injected to the run's. */
function addFaults(total: Record<string, number>, faults: Record<string, number>): void {
  for (const [name, n] of Object.entries(faults)) total[name] = (total[name] ?? 0) + n;
}

/** The mode flags of this run, as `deno task soak --cluster` takes them again. */
function replayFlags(): string {
  const flags = [
    "boot-reads",
    "read-bursts",
    "idle-release",
    "slow-syncs",
    "joins",
    "leaves",
    "replacements",
    "declare-lost",
  ] as const;
  return flags.filter((flag) => values[flag]).map((flag) => ` --${flag}`).join("");
}
