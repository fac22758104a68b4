/**
 * Membership at scale, in the deterministic simulator: the simulator's speed (N=1000, and
 * 10 000 node-hours of a quiet N=100 cluster), detection time of a killed member at
 * N=1000, dissemination rounds of joins and deaths, members falsely declared dead at 20%
 * packet loss over 10 000 node-hours (N=100) and while 4 of 100 members pause for 2–10 s,
 * and convergence after a 50/50 partition heals. Prints each figure with its
 * target and the seeds that produced it: any run replays exactly from its seed.
 *
 * Run: `deno run -A bench/membership_sim.ts [--quick] [--seed N] [--workers N]`
 * (`--quick`: a few minutes, smaller samples; the default takes tens of CPU-minutes, spread
 * over `--workers` threads, default the number of CPUs).
 *
 * @module
 */

import process from "node:process";
import {
  membershipConfigDefault,
  pushPullIntervalFor,
} from "../cluster/membership/_membership_config.ts";
import {
  type DetectionSample,
  type DisseminationSample,
  type FalseDeathResult,
  measureDetection,
  measureDissemination,
  measureFalseDeaths,
  measurePartitionHeal,
  type PartitionHealSample,
  percentile,
} from "../cluster/sim/_sim_scenarios.ts";
import { deriveSeed, Simulator } from "../cluster/sim/mod.ts";

/** Work a worker thread can run: one scenario call and its options. */
type Job =
  | { kind: "detection"; options: Parameters<typeof measureDetection>[0] }
  | { kind: "dissemination"; options: Parameters<typeof measureDissemination>[0] }
  | { kind: "falseDeaths"; options: Parameters<typeof measureFalseDeaths>[0] }
  | { kind: "partition"; options: Parameters<typeof measurePartitionHeal>[0] };

function runJob(job: Job): unknown {
  switch (job.kind) {
    case "detection":
      return measureDetection(job.options);
    case "dissemination":
      return measureDissemination(job.options);
    case "falseDeaths":
      return measureFalseDeaths(job.options);
    case "partition":
      return measurePartitionHeal(job.options);
  }
}

const workerName = "membership-sim-worker";
const inWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
    "undefined" && (globalThis as { name?: string }).name === workerName;

/** Runs `jobs` on up to `threads` workers (this module again), in order of submission. */
async function runAll<T>(jobs: Job[], threads: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const lane = async () => {
    const worker = new Worker(import.meta.url, { type: "module", name: workerName });
    try {
      while (next < jobs.length) {
        const index = next++;
        results[index] = await new Promise<T>((resolve, reject) => {
          worker.onmessage = (event) => resolve(event.data as T);
          worker.onerror = (event) => {
            event.preventDefault();
            reject(new Error(`job ${index} failed: ${event.message}`));
          };
          worker.postMessage(jobs[index]);
        });
      }
    } finally {
      worker.terminate();
    }
  };
  await Promise.all(Array.from({ length: Math.min(threads, jobs.length) }, lane));
  return results;
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

function verdict(ok: boolean): string {
  return ok ? "MET" : "NOT MET";
}

function cpuSeconds(since: NodeJS.CpuUsage): string {
  const used = process.cpuUsage(since);
  return `${((used.user + used.system) / 1e6).toFixed(0)} CPU-s`;
}

async function main(): Promise<void> {
  const args = Deno.args;
  const quick = args.includes("--quick");
  const option = (name: string, fallback: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const seed = option("--seed", 2024);
  const threads = option("--workers", navigator.hardwareConcurrency ?? 2);
  const wallStart = performance.now();
  console.log(
    `membership simulation bench (${
      quick ? "quick" : "full"
    }), base seed ${seed}, ${threads} workers`,
  );

  // Simulator speed: a settled 1000-member cluster losing one member, 60 simulated seconds.
  {
    const cpu = process.cpuUsage();
    const sim = new Simulator({ seed });
    sim.bootstrap(1000);
    sim.at(20_000, () => sim.kill(17));
    sim.run(60_000);
    console.log(
      `\nspeed: N=1000 for 60 simulated s (bootstrap and a kill): ${
        cpuSeconds(cpu)
      }, ${sim.stats.events} events, ${sim.stats.messages} messages`,
    );
  }

  // Steady state: N=100 with nothing going wrong, in runs of 50 simulated hours.
  {
    const cpu = process.cpuUsage();
    const results = await runAll<FalseDeathResult>(
      Array.from({ length: quick ? 1 : 2 }, (_, i) => ({
        kind: "falseDeaths" as const,
        options: { members: 100, seed: deriveSeed(seed, 50 + i), hours: quick ? 1 : 50 },
      })),
      threads,
    );
    const nodeHours = results.reduce((sum, r) => sum + r.nodeHours, 0);
    const deaths = results.reduce((sum, r) => sum + r.falseDeaths, 0);
    console.log(
      `steady state: N=100, ${nodeHours} node-hours, no loss: ${
        cpuSeconds(cpu)
      } over ${threads} workers; ${deaths} members declared dead; seeds ${
        results.map((r) => r.seed).join(", ")
      }`,
    );
  }

  // Detection at N=1000: kills 40 s apart in settled clusters.
  const detectionRuns = quick ? 1 : 4;
  const detection = (await runAll<DetectionSample[]>(
    Array.from({ length: detectionRuns }, (_, run) => ({
      kind: "detection" as const,
      options: {
        members: 1000,
        seed: deriveSeed(seed, 100 + run),
        runs: 1,
        killsPerRun: quick ? 3 : 5,
      },
    })),
    threads,
  )).flat();
  {
    const times = detection.map((d) => d.detectionMs);
    const median = percentile(times, 50);
    const p95 = percentile(times, 95);
    console.log(
      `\ndetection N=1000 (kill -> dead for all, ${times.length} kills): median ${s(median)}, p95 ${
        s(p95)
      }, max ${s(Math.max(...times))}; first "dead" median ${
        s(percentile(detection.map((d) => d.firstDeadMs), 50))
      }`,
    );
    console.log(
      `  target median <= 16 s: ${verdict(median <= 16_000)}; p95 <= 18 s: ${
        verdict(p95 <= 18_000)
      }`,
    );
    console.log(`  seeds: ${[...new Set(detection.map((d) => d.seed))].join(", ")}`);
  }
  for (const members of [5, 20, 100]) {
    const samples = measureDetection({
      members,
      seed: deriveSeed(seed, members),
      runs: quick ? 10 : 40,
    });
    const times = samples.map((d) => d.detectionMs);
    console.log(
      `detection N=${members}: median ${s(percentile(times, 50))}, p95 ${
        s(percentile(times, 95))
      } (${times.length} runs, base seed ${deriveSeed(seed, members)})`,
    );
  }

  // Dissemination: joins and deaths alternating, 25 s apart.
  const disseminationJobs: Job[] = [
    ...Array.from({ length: quick ? 1 : 3 }, (_, i) => ({
      kind: "dissemination" as const,
      options: { members: 1000, seed: deriveSeed(seed, 200 + i), changes: quick ? 6 : 10 },
    })),
    ...Array.from({ length: quick ? 2 : 5 }, (_, i) => ({
      kind: "dissemination" as const,
      options: { members: 100, seed: deriveSeed(seed, 300 + i), changes: 40 },
    })),
  ];
  const dissemination = await runAll<DisseminationSample[]>(disseminationJobs, threads);
  console.log("");
  for (const members of [1000, 100]) {
    const samples = dissemination.filter((_, i) =>
      (disseminationJobs[i].options as { members: number }).members === members
    ).flat();
    const rounds = samples.map((d) => d.rounds);
    const bound = Math.log2(members) + 3;
    const p99 = percentile(rounds, 99);
    console.log(
      `dissemination N=${members} (${samples.length} changes): p50 ${
        percentile(rounds, 50).toFixed(2)
      }, p99 ${p99.toFixed(2)}, max ${
        Math.max(...rounds).toFixed(2)
      } rounds; target p99 <= log2 N + 3 = ${bound.toFixed(2)}: ${verdict(p99 <= bound)}; seeds ${
        [...new Set(samples.map((d) => d.seed))].join(", ")
      }`,
    );
  }

  // False deaths at 20% loss: runs of 10 simulated hours at N=100.
  {
    const cpu = process.cpuUsage();
    const hoursPerRun = quick ? 1 : 10;
    const runs = quick ? 2 : 10;
    const results = await runAll<FalseDeathResult>(
      Array.from({ length: runs }, (_, i) => ({
        kind: "falseDeaths" as const,
        options: {
          members: 100,
          seed: deriveSeed(seed, 400 + i),
          hours: hoursPerRun,
          lossRate: 0.2,
        },
      })),
      threads,
    );
    const nodeHours = results.reduce((sum, r) => sum + r.nodeHours, 0);
    const falseDeaths = results.reduce((sum, r) => sum + r.falseDeaths, 0);
    const suspicions = results.reduce((sum, r) => sum + r.suspicions, 0);
    const refutations = results.reduce((sum, r) => sum + r.refutations, 0);
    console.log(
      `\n20% loss, N=100, ${nodeHours} node-hours: ${falseDeaths} members declared dead (target 0: ${
        verdict(falseDeaths === 0)
      }); ${suspicions} suspicions recorded, ${refutations} refutations (${
        cpuSeconds(cpu)
      } over ${threads} workers)`,
    );
    console.log(
      `  seeds: ${
        results.map((r) => `${r.seed}${r.falseDeaths > 0 ? `(${r.falseDeaths} dead)` : ""}`).join(
          ", ",
        )
      }`,
    );
  }

  // Pauses: every 30 s, 4 of 100 members stop for a uniform 2–10 s.
  {
    const runs = quick ? 1 : 4;
    const results = await runAll<FalseDeathResult>(
      Array.from({ length: runs }, (_, i) => ({
        kind: "falseDeaths" as const,
        options: {
          members: 100,
          seed: deriveSeed(seed, 500 + i),
          hours: quick ? 1 : 2.5,
          pauses: { count: 4, minMs: 2_000, maxMs: 10_000, everyMs: 30_000 },
        },
      })),
      threads,
    );
    const pauses = results.reduce((sum, r) => sum + r.pauses, 0);
    const falseDeaths = results.reduce((sum, r) => sum + r.falseDeaths, 0);
    const refuteMax = Math.max(...results.map((r) => r.refuteAfterResumeMsMax));
    console.log(
      `\npauses 2-10 s, 4 of 100 every 30 s: ${pauses} pauses, ${falseDeaths} members declared dead (target 0: ${
        verdict(falseDeaths === 0)
      }); slowest return to alive in every view after a resume: ${s(refuteMax)}; seeds ${
        results.map((r) => r.seed).join(", ")
      }`,
    );
  }

  // Partition heal: 50/50 for 90 s, then measure convergence.
  {
    const jobs: Job[] = [100, 1000].map((members) => ({
      kind: "partition" as const,
      options: {
        members,
        seed: deriveSeed(seed, 600 + members),
        runs: members === 1000 ? 1 : quick ? 2 : 5,
        partitionMs: 90_000,
        pushPullIntervalMs: pushPullIntervalFor(membershipConfigDefault, members),
      },
    }));
    const results = await runAll<PartitionHealSample[]>(quick ? jobs.slice(0, 1) : jobs, threads);
    console.log("");
    for (const samples of results) {
      const worst = Math.max(...samples.map((p) => p.healToConvergedMs));
      const interval = samples[0].pushPullIntervalMs;
      console.log(
        `partition heal (${samples.length} runs, push-pull ${s(interval)}): ${
          samples.map((p) => s(p.healToConvergedMs)).join(", ")
        }; target <= 2 push-pull intervals: ${verdict(worst <= 2 * interval)}; seeds ${
          samples.map((p) => p.seed).join(", ")
        }`,
      );
    }
  }
  console.log(`\ndone in ${s(performance.now() - wallStart)} wall`);
}

if (inWorker) {
  const scope = globalThis as unknown as {
    onmessage: (event: MessageEvent<Job>) => void;
    postMessage: (data: unknown) => void;
  };
  scope.onmessage = (event) => scope.postMessage(runJob(event.data));
} else if (import.meta.main) {
  await main();
}
