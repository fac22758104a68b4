/**
 * The seeded fault schedule of the whole-cluster simulation: every 0.5–3 s
 * one of crash and restart (the disk keeps what was synced), full and one-way
 * partitions, isolation (cut off and seen dead by the others while it runs,
 * so its leases are taken over), pauses, message loss, duplication and
 * reordering; with joins, batches of new members; with leaves, graceful stops;
 * with replacements, one member dying for good and a new one joining in its
 * place. A majority of members always runs, so that metadata can always make
 * progress again; lease contention comes from the workload.
 *
 * @module
 */
import { type Fault, isolate, pause, phase, pick, scheduleFaultsFrom } from "./_fault_schedule.ts";
import type { NetConditions } from "./_sim_net.ts";
import type { ClusterSim } from "./cluster_sim.ts";

const faults: Record<string, Fault<ClusterSim>> = {
  crash(sim) {
    const running = sim.running();
    if (2 * (running.length - 1) <= sim.nodes.size) return false;
    const node = pick(sim.world, running)!;
    sim.crash(node.id);
    sim.world.at(500 + sim.world.random.next() * 9_500, () => sim.start(node.id));
    return true;
  },
  partition(sim) {
    const ids = [...sim.nodes.keys()];
    const side = new Set(ids.filter(() => sim.world.random.next() < 0.5));
    for (const a of ids) {
      for (const b of ids) if (side.has(a) !== side.has(b)) sim.world.cut(a, b);
    }
    sim.world.at(1000 + sim.world.random.next() * 5000, () => sim.world.heal());
    return true;
  },
  oneWay(sim) {
    const ids = [...sim.nodes.keys()];
    const a = pick(sim.world, ids)!, b = pick(sim.world, ids)!;
    if (a === b) return false;
    sim.world.cut(a, b);
    sim.world.at(1000 + sim.world.random.next() * 5000, () => sim.world.heal());
    return true;
  },
  isolate(sim) {
    const node = pick(sim.world, sim.running());
    return node !== undefined && isolate(sim, node.id, { minMs: 2000, spanMs: 8000 });
  },
  pause(sim) {
    const node = pick(sim.world, sim.running());
    return node !== undefined && pause(sim.world, node.id, { minMs: 300, spanMs: 2500 });
  },
  loss: (sim) => hold(sim, { lossRate: 0.02 + sim.world.random.next() * 0.15 }, { lossRate: 0 }),
  duplicate: (sim) => hold(sim, { duplicateRate: 0.2 }, { duplicateRate: 0 }),
  reorder: (sim) => hold(sim, { delayMaxMs: 40 }, { delayMaxMs: 3 }),
};

/** Members a schedule with joins grows to at most. */
export const clusterSimMembersMax = 9;

/** Members joining at once: 1–3 new members with empty disks (see ClusterSimOptions.joins). */
const join: Fault<ClusterSim> = (sim) => {
  const batch = 1 + sim.world.random.int(3);
  if (sim.nodes.size + batch > clusterSimMembersMax) return false;
  for (let i = 0; i < batch; i++) sim.join();
  return true;
};

/**
 * A member stops gracefully (seen as left at once, so placement moves off it);
 * half the time it comes back 2–12 s later with its disk, else only once the
 * faults end.
 */
const leave: Fault<ClusterSim> = (sim) => {
  const running = sim.running();
  if (2 * (running.length - 1) <= sim.nodes.size) return false;
  const node = pick(sim.world, running)!;
  sim.leave(node.id);
  if (sim.world.random.next() < 0.5) {
    sim.world.at(2_000 + sim.world.random.next() * 10_000, () => sim.start(node.id));
  }
  return true;
};

/**
 * Once per schedule, at R = 3: a running member dies for good and a new member
 * joins in its place 0–5 s later, while the other faults go on (every flushed
 * write is on two copies at least, so one member lost for good loses none).
 * At R = 2 a flush while one replica is down is durable on one copy, and
 * losing that member for good as well is a second failure: there the
 * replacement comes once the faults are over and healing had time
 * ({@linkcode replaceMember}, from cluster_sim.ts).
 */
const replace: Fault<ClusterSim> = (sim) => {
  const running = sim.running();
  if (sim.replicas < 3 || sim.gone().size > 0) return false;
  if (2 * (running.length - 1) <= sim.nodes.size) return false;
  return replaceMember(sim);
};

/** A running member dies for good and a new one joins 0–5 s later; false when none can. */
export function replaceMember(sim: ClusterSim): boolean {
  const running = sim.running();
  if (running.length < 2 || sim.nodes.size + 1 > clusterSimMembersMax) return false;
  sim.retire(pick(sim.world, running)!.id);
  sim.world.at(sim.world.random.next() * 5_000, () => sim.join());
  return true;
}

/**
 * Schedules faults until `untilMs`; with `joins`, members also join in
 * batches, with `leaves` they stop gracefully (some to come back), and with
 * `replacements` one dies for good and a new one takes its place.
 */
export function scheduleClusterFaults(
  sim: ClusterSim,
  untilMs: number,
  more: { joins?: boolean; leaves?: boolean; replacements?: boolean } = {},
): void {
  const table = { ...faults };
  if (more.joins === true) Object.assign(table, { join });
  if (more.leaves === true) Object.assign(table, { leave });
  if (more.replacements === true) Object.assign(table, { replace });
  scheduleFaultsFrom(sim, table, untilMs);
}

/** Network conditions for a while (see {@linkcode phase} in `_fault_schedule.ts`). */
function hold(
  sim: ClusterSim,
  during: Partial<NetConditions>,
  after: Partial<NetConditions>,
): boolean {
  return phase(sim.world, during, after, { minMs: 1000, spanMs: 4000 });
}
