/**
 * Measurements over simulated clusters, shared by the membership suite and the bench:
 * detection time of a killed member, dissemination rounds of joins and deaths, false
 * deaths under loss and pauses, and convergence after a partition heals. Each returns its
 * figures together with the seeds it used, so any run can be replayed exactly.
 *
 * @module
 */

import { assert } from "../../core/assert.ts";
import { pushPullIntervalFor } from "../membership/mod.ts";
import { type MembershipConfig, membershipConfigDefault } from "../membership/mod.ts";
import { deriveSeed, Simulator, type TraceEvent } from "./simulator.ts";
import type { MemberStatus } from "../membership/mod.ts";

const statusCode: Record<MemberStatus, number> = { alive: 1, suspect: 2, dead: 3, left: 4 };

/** Every node's view of every member, kept current from the trace. */
export class Views {
  #status: Uint8Array;
  #capacity: number;

  constructor(readonly sim: Simulator, capacity: number) {
    this.#capacity = capacity;
    this.#status = new Uint8Array(capacity * capacity);
    sim.onTrace((e) => this.#record(e));
  }

  /** Status `observer` holds for `member` (undefined when it never heard of it). */
  status(observer: number, member: number): MemberStatus | undefined {
    const code = this.#status[observer * this.#capacity + member];
    return code === 0 ? undefined : (["alive", "suspect", "dead", "left"] as const)[code - 1];
  }

  /** Indices of the nodes that are up and running (not paused: their views are frozen). */
  up(): number[] {
    const now = this.sim.now;
    return this.sim.nodes.filter((n) => n.up && n.pausedUntilMs <= now).map((n) => n.index);
  }

  /** True when every up node sees every up node (itself included) alive. */
  converged(): boolean {
    const up = this.up();
    for (const observer of up) {
      for (const member of up) {
        if (this.#status[observer * this.#capacity + member] !== statusCode.alive) return false;
      }
    }
    return true;
  }

  /** Up nodes (other than `member`) that do not yet see `member` as `status`. */
  missing(member: number, status: MemberStatus): number {
    let count = 0;
    for (const observer of this.up()) {
      if (observer === member) continue;
      if (this.#status[observer * this.#capacity + member] !== statusCode[status]) count += 1;
    }
    return count;
  }

  #record(e: TraceEvent): void {
    assert(e.observer < this.#capacity && e.member < this.#capacity, "views too small");
    this.#status[e.observer * this.#capacity + e.member] = statusCode[e.status];
  }
}

/** Runs `sim` until `done()` holds (checked every `stepMs`) or `untilMs`; returns the time. */
export function runUntil(
  sim: Simulator,
  done: () => boolean,
  untilMs: number,
  stepMs = 50,
): number | undefined {
  while (sim.now < untilMs) {
    sim.run(Math.min(untilMs, sim.now + stepMs));
    if (done()) return sim.now;
  }
  return undefined;
}

/** p-th percentile (0–100) of `values` by the nearest-rank method. */
export function percentile(values: number[], p: number): number {
  assert(values.length > 0, "percentile of nothing");
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

/** Options shared by the measurements. */
export interface ScenarioOptions {
  members: number;
  /** Seeds are derived from this one; each sample names its own. */
  seed: number;
  config?: Partial<MembershipConfig>;
  lossRate?: number;
}

/** One detection sample: kill at `killedAtMs`, known dead by every live member `detectionMs` later. */
export interface DetectionSample {
  seed: number;
  victim: number;
  detectionMs: number;
  firstDeadMs: number;
}

/**
 * Kills random members of a settled cluster, `killsPerRun` per run (`spacingMs` apart,
 * default one), over `runs` runs, and measures for each the time until the last live
 * member marks it dead.
 */
export function measureDetection(
  options: ScenarioOptions & { runs: number; killsPerRun?: number; spacingMs?: number },
): DetectionSample[] {
  const samples: DetectionSample[] = [];
  for (let run = 0; run < options.runs; run += 1) {
    const seed = deriveSeed(options.seed, run);
    const sim = new Simulator({ seed, config: options.config, lossRate: options.lossRate });
    const views = new Views(sim, options.members);
    sim.bootstrap(options.members);
    let victim = -1;
    let firstDeadMs = Infinity;
    sim.onTrace((e) => {
      if (e.member === victim && e.status === "dead") firstDeadMs = Math.min(firstDeadMs, e.timeMs);
    });
    // The first kill comes after every node's timers have started, at a random phase.
    let killAtMs = 5_000 + sim.random.next() * 1_000;
    for (let kill = 0; kill < (options.killsPerRun ?? 1); kill += 1) {
      sim.run(killAtMs);
      const up = views.up();
      victim = up[sim.random.int(up.length)];
      firstDeadMs = Infinity;
      sim.kill(victim);
      const doneMs = runUntil(
        sim,
        () => views.missing(victim, "dead") === 0,
        killAtMs + 300_000,
        10,
      );
      assert(doneMs !== undefined, `seed ${seed}: victim ${victim} never known dead by all`);
      samples.push({
        seed,
        victim,
        detectionMs: doneMs - killAtMs,
        firstDeadMs: firstDeadMs - killAtMs,
      });
      killAtMs += options.spacingMs ?? 40_000;
    }
  }
  return samples;
}

/** One dissemination sample: rounds from the first member learning a change to the last. */
export interface DisseminationSample {
  seed: number;
  kind: "join" | "death";
  member: number;
  rounds: number;
}

interface Watch {
  kind: "join" | "death";
  member: number;
  firstMs: number;
  eligible: number[];
  reached: Set<number>;
}

/**
 * Alternates deaths (a random member killed) and joins (a new member through a random
 * seed), `changes` in all, `spacingMs` apart, and measures for each the gossip rounds
 * between the first member learning it (the first "dead" declared, the first member to
 * hear of the joiner) and the last live member learning it.
 */
export function measureDissemination(
  options: ScenarioOptions & { changes: number; spacingMs?: number },
): DisseminationSample[] {
  const seed = options.seed;
  const spacingMs = options.spacingMs ?? 25_000;
  const gossipMs = options.config?.gossipIntervalMs ?? membershipConfigDefault.gossipIntervalMs;
  const sim = new Simulator({ seed, config: options.config, lossRate: options.lossRate });
  const views = new Views(sim, options.members + options.changes);
  sim.bootstrap(options.members);
  const samples: DisseminationSample[] = [];
  const watches = new Map<number, Watch>();
  const wanted = (w: Watch) => (w.kind === "death" ? "dead" : "alive");
  sim.onTrace((e) => {
    const watch = watches.get(e.member);
    if (watch === undefined || e.observer === e.member || e.status !== wanted(watch)) return;
    if (watch.reached.size === 0) {
      watch.firstMs = e.timeMs;
      // A death can reach only those that knew the member (news of a stranger's death is
      // ignored); a join, everyone.
      if (watch.kind === "join") {
        watch.eligible = views.up().filter((i) => i !== e.member);
      }
    }
    watch.reached.add(e.observer);
    if (watch.eligible.some((i) => sim.nodes[i].up && !watch.reached.has(i))) return;
    const rounds = (e.timeMs - watch.firstMs) / gossipMs;
    samples.push({ seed, kind: watch.kind, member: e.member, rounds });
    watches.delete(e.member);
  });
  for (let change = 0; change < options.changes; change += 1) {
    sim.run(sim.now + spacingMs);
    const up = sim.nodes.filter((n) => n.up);
    if (change % 2 === 0) {
      const victim = up[sim.random.int(up.length)].index;
      const knew = views.up().filter((i) => i !== victim && views.status(i, victim) !== undefined);
      watches.set(victim, {
        kind: "death",
        member: victim,
        firstMs: 0,
        eligible: knew,
        reached: new Set(),
      });
      sim.kill(victim);
    } else {
      const seedNode = up[sim.random.int(up.length)].index;
      const joiner = sim.addNode({ seeds: [seedNode] }).index;
      watches.set(joiner, {
        kind: "join",
        member: joiner,
        firstMs: 0,
        eligible: [],
        reached: new Set(),
      });
    }
  }
  // A member that missed a change's gossip learns it at a push-pull: wait for a few.
  const config = { ...membershipConfigDefault, ...options.config };
  sim.run(sim.now + Math.max(4 * spacingMs, 3 * pushPullIntervalFor(config, options.members)));
  assert(
    watches.size === 0,
    `seed ${seed}: changes never reached everyone: ${[...watches.keys()]}`,
  );
  return samples;
}

/** Result of a run looking for members declared dead that never died. */
export interface FalseDeathResult {
  seed: number;
  nodeHours: number;
  /** "dead" declarations (by any observer) about members that were never killed. */
  falseDeaths: number;
  /** Suspicions raised (by any observer), and refutations (incarnation raised by the member). */
  suspicions: number;
  refutations: number;
  pauses: number;
  /** Longest time from a resume until every live member saw the paused member alive. */
  refuteAfterResumeMsMax: number;
}

/** Pauses: every `everyMs`, `count` random members stop for uniform [minMs, maxMs). */
export interface PauseOptions {
  count: number;
  minMs: number;
  maxMs: number;
  everyMs: number;
}

/**
 * Runs a cluster that nobody kills for `hours` simulated hours, under `lossRate` and
 * optional pauses, and counts members declared dead (all of them false).
 */
export function measureFalseDeaths(
  options: ScenarioOptions & { hours: number; pauses?: PauseOptions },
): FalseDeathResult {
  const seed = options.seed;
  const sim = new Simulator({ seed, config: options.config, lossRate: options.lossRate });
  const views = new Views(sim, options.members);
  sim.bootstrap(options.members);
  const result: FalseDeathResult = {
    seed,
    nodeHours: options.members * options.hours,
    falseDeaths: 0,
    suspicions: 0,
    refutations: 0,
    pauses: 0,
    refuteAfterResumeMsMax: 0,
  };
  sim.onTrace((e) => {
    if (e.status === "dead") result.falseDeaths += 1;
    if (e.status === "suspect") result.suspicions += 1;
    if (e.observer === e.member && e.incarnation > 0) result.refutations += 1;
  });
  const endMs = options.hours * 3_600_000;
  const pauses = options.pauses;
  const resumes: { member: number; atMs: number }[] = [];
  if (pauses !== undefined) {
    for (let atMs = 10_000; atMs < endMs - 30_000; atMs += pauses.everyMs) {
      sim.at(atMs, () => {
        const running = sim.nodes.filter((n) => n.pausedUntilMs <= sim.now);
        for (let i = 0; i < pauses.count && running.length > 0; i += 1) {
          const [node] = running.splice(sim.random.int(running.length), 1);
          const durationMs = sim.random.between(pauses.minMs, pauses.maxMs);
          sim.pause(node.index, durationMs);
          resumes.push({ member: node.index, atMs: sim.now + durationMs });
          result.pauses += 1;
        }
      });
    }
  }
  // Check, every 100 ms, how long after its resume a paused member is seen alive by all.
  for (let t = 0; t < endMs; t = sim.now) {
    sim.run(Math.min(endMs, t + 100));
    for (let i = resumes.length - 1; i >= 0; i -= 1) {
      const { member, atMs } = resumes[i];
      if (atMs > sim.now) continue;
      if (views.missing(member, "alive") > 0 && sim.now - atMs < 60_000) continue;
      result.refuteAfterResumeMsMax = Math.max(result.refuteAfterResumeMsMax, sim.now - atMs);
      resumes.splice(i, 1);
    }
  }
  return result;
}

/** Result of one partition: time from heal until every live member sees every other alive. */
export interface PartitionHealSample {
  seed: number;
  healToConvergedMs: number;
  /** The push-pull interval at this cluster size, the bound's unit. */
  pushPullIntervalMs: number;
}

/**
 * Splits a settled cluster in two random halves for `partitionMs` (each half declares the
 * other dead), heals it, and measures the time until views converge again.
 */
export function measurePartitionHeal(
  options: ScenarioOptions & { runs: number; partitionMs: number; pushPullIntervalMs: number },
): PartitionHealSample[] {
  const samples: PartitionHealSample[] = [];
  for (let run = 0; run < options.runs; run += 1) {
    const seed = deriveSeed(options.seed, run);
    const sim = new Simulator({ seed, config: options.config, lossRate: options.lossRate });
    const views = new Views(sim, options.members);
    sim.bootstrap(options.members);
    sim.run(5_000);
    const order = sim.nodes.map((n) => n.index);
    for (let i = order.length - 1; i > 0; i -= 1) {
      const j = sim.random.int(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const half = order.length >> 1;
    const sides = [order.slice(0, half), order.slice(half)];
    sim.partition(sides);
    sim.run(sim.now + options.partitionMs);
    const a = sides[0][0];
    const b = sides[1][0];
    assert(views.status(a, b) === "dead", `seed ${seed}: the partition did not split the views`);
    sim.heal();
    const healedAt = sim.now;
    const doneMs = runUntil(
      sim,
      () => views.converged(),
      healedAt + 10 * options.pushPullIntervalMs,
      100,
    );
    assert(doneMs !== undefined, `seed ${seed}: views never converged after the heal`);
    samples.push({
      seed,
      healToConvergedMs: doneMs - healedAt,
      pushPullIntervalMs: options.pushPullIntervalMs,
    });
  }
  return samples;
}
