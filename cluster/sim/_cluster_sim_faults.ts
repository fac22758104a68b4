/**
 * The seeded fault schedule of the whole-cluster simulation: every 0.5–3 s
 * one of crash and restart (the disk keeps what was synced), full and one-way
 * partitions, isolation (cut off and seen dead by the others while it runs,
 * so its leases are taken over), pauses, message loss, duplication and
 * reordering. A majority of members always runs, so that metadata can always
 * make progress again; lease contention comes from the workload.
 *
 * @module
 */
import type { ClusterSim } from "./cluster_sim.ts";

type Fault = (sim: ClusterSim) => boolean;

const faults: Record<string, Fault> = {
  crash(sim) {
    const running = sim.running();
    if (2 * (running.length - 1) <= sim.nodes.size) return false;
    const node = pick(sim, running)!;
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
    const a = pick(sim, ids)!, b = pick(sim, ids)!;
    if (a === b) return false;
    sim.world.cut(a, b);
    sim.world.at(1000 + sim.world.random.next() * 5000, () => sim.world.heal());
    return true;
  },
  isolate(sim) {
    const node = pick(sim, sim.running());
    if (node === undefined) return false;
    for (const other of sim.nodes.keys()) {
      if (other === node.id) continue;
      sim.world.cut(node.id, other);
      sim.world.cut(other, node.id);
    }
    sim.seenDead(node.id, true);
    sim.world.at(2000 + sim.world.random.next() * 8000, () => {
      sim.world.heal();
      sim.seenDead(node.id, false);
    });
    return true;
  },
  pause(sim) {
    const node = pick(sim, sim.running());
    if (node === undefined) return false;
    sim.world.pause(node.id, 300 + sim.world.random.next() * 2500);
    return true;
  },
  loss: (sim) => phase(sim, { lossRate: 0.02 + sim.world.random.next() * 0.15 }, { lossRate: 0 }),
  duplicate: (sim) => phase(sim, { duplicateRate: 0.2 }, { duplicateRate: 0 }),
  reorder: (sim) => phase(sim, { delayMaxMs: 40 }, { delayMaxMs: 3 }),
};

/** Schedules faults until `untilMs`. */
export function scheduleClusterFaults(sim: ClusterSim, untilMs: number): void {
  const names = Object.keys(faults);
  const next = () => {
    if (sim.world.now() >= untilMs) return;
    const name = names[sim.world.random.int(names.length)];
    if (faults[name](sim)) {
      sim.count(name);
      sim.note(`fault: ${name}`);
    }
    sim.world.at(500 + sim.world.random.next() * 2500, next);
  };
  next();
}

function pick<T>(sim: ClusterSim, list: T[]): T | undefined {
  return list.length === 0 ? undefined : list[sim.world.random.int(list.length)];
}

/** Network conditions for 1–5 s. */
function phase(
  sim: ClusterSim,
  during: Partial<ClusterSim["world"]["conditions"]>,
  after: Partial<ClusterSim["world"]["conditions"]>,
): boolean {
  Object.assign(sim.world.conditions, during);
  sim.world.at(1000 + sim.world.random.next() * 4000, () => {
    Object.assign(sim.world.conditions, after);
  });
  return true;
}
