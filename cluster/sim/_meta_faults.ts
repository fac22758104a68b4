/**
 * The seeded fault schedule of the metadata simulation: every 0.5–3 s one of
 * crash and restart, permanent death, graceful leave, joins in batches of 1–3,
 * full and one-way partitions, isolation (cut off and seen dead by the others,
 * longer than the dead grace at times), pauses, message loss, duplication and
 * reordering, and clock jumps.
 *
 * Permanent losses (death, leave) are only chosen while every voter runs and
 * no change of voters is under way, so that the cluster can always recover a
 * quorum: the checker then also asks that everything is readable in the end.
 *
 * @module
 */
import { type Fault, isolate, pause, phase, pick, scheduleFaultsFrom } from "./_fault_schedule.ts";
import type { NetConditions } from "./_sim_net.ts";
import { allVoters, majority, type MetaConfig } from "../meta/mod.ts";
import type { MetaSim } from "./meta_sim.ts";

/** Members a simulation grows to at most. */
const nodesMax = 14;
/** Members that always stay (permanent losses stop here). */
const nodesMin = 3;

const faults: Record<string, Fault<MetaSim>> = {
  crash(sim) {
    const node = pick(sim.world, sim.running());
    if (node === undefined) return false;
    sim.crash(node.id);
    sim.world.at(500 + sim.world.random.next() * 14_500, () => {
      if (!sim.killed.has(node.id)) sim.restart(node.id);
    });
    return true;
  },
  kill(sim) {
    const node = pick(sim.world, sim.running());
    if (node === undefined || !canLose(sim, node.id)) return false;
    sim.killed.add(node.id);
    sim.crash(node.id);
    return true;
  },
  leave(sim) {
    const node = pick(sim.world, sim.running());
    if (node === undefined || !canLose(sim, node.id)) return false;
    sim.leave(node.id);
    return true;
  },
  join(sim) {
    const batch = 1 + sim.world.random.int(3);
    if (sim.nodes.size + batch > nodesMax) return false;
    for (let i = 0; i < batch; i++) sim.add();
    return true;
  },
  partition(sim) {
    const running = sim.running();
    const side = new Set(running.filter(() => sim.world.random.next() < 0.5).map((n) => n.id));
    for (const a of running) {
      for (const b of running) if (side.has(a.id) !== side.has(b.id)) sim.world.cut(a.id, b.id);
    }
    sim.world.at(1000 + sim.world.random.next() * 7000, () => sim.world.heal());
    return true;
  },
  oneWay(sim) {
    const running = sim.running();
    for (let i = 0; i < 3; i++) {
      const a = pick(sim.world, running), b = pick(sim.world, running);
      if (a !== undefined && b !== undefined && a !== b) sim.world.cut(a.id, b.id);
    }
    sim.world.at(1000 + sim.world.random.next() * 7000, () => sim.world.heal());
    return true;
  },
  isolate(sim) {
    const node = pick(sim.world, sim.running());
    return node !== undefined && isolate(sim, node.id, { minMs: 2000, spanMs: 10_000 });
  },
  pause(sim) {
    const node = pick(sim.world, sim.running());
    return node !== undefined && pause(sim.world, node.id, { minMs: 500, spanMs: 3500 });
  },
  loss: (sim) => hold(sim, { lossRate: 0.05 + sim.world.random.next() * 0.25 }, { lossRate: 0 }),
  duplicate: (sim) => hold(sim, { duplicateRate: 0.3 }, { duplicateRate: 0 }),
  reorder: (sim) => hold(sim, { delayMaxMs: 60 }, { delayMaxMs: 3 }),
  clockJump(sim) {
    const node = pick(sim.world, sim.running());
    if (node === undefined) return false;
    node.clockOffsetMs += (sim.world.random.next() < 0.5 ? -1 : 1) * 120_000;
    return true;
  },
};

/** Schedules faults until `untilMs`. */
export function scheduleFaults(sim: MetaSim, untilMs: number): void {
  scheduleFaultsFrom(sim, faults, untilMs);
}

/** Network conditions for a while (see {@linkcode phase} in `_fault_schedule.ts`). */
function hold(
  sim: MetaSim,
  during: Partial<NetConditions>,
  after: Partial<NetConditions>,
): boolean {
  return phase(sim.world, during, after, { minMs: 2000, spanMs: 6000 });
}

/** True when member `id` may be lost for good without ever losing a quorum of voters. */
function canLose(sim: MetaSim, id: string): boolean {
  const running = sim.running();
  if (running.length <= nodesMin) return false;
  let newest: MetaConfig | null = null;
  for (const node of running) {
    const config = node.runtime!.configs.current();
    if (config !== null && (newest === null || config.epoch > newest.epoch)) newest = config;
  }
  if (newest === null || newest.next !== null) return false;
  const up = new Set(running.filter((node) => !sim.isSeenDead(node.id)).map((node) => node.id));
  const voters = allVoters(newest);
  const left = voters.filter((voter) => voter !== id && up.has(voter)).length;
  return voters.every((voter) => up.has(voter)) && left >= majority(voters.length);
}
