/**
 * What the simulations' fault schedules share: a fault every 0.5–3 s drawn
 * from a table, random picks, and network conditions held for a while.
 *
 * @module
 */
import type { NetConditions, SimWorld } from "./_sim_net.ts";

/** A simulation that faults act on: its world, its fault counts, its trace. */
export interface FaultHost {
  readonly world: SimWorld;
  count(fault: string): void;
  note(line: string): void;
}

/** Injects one fault; false when it could not now (nothing is counted then). */
export type Fault<S> = (sim: S) => boolean;

/** Schedules faults from `faults` until `untilMs`. */
export function scheduleFaultsFrom<S extends FaultHost>(
  sim: S,
  faults: Record<string, Fault<S>>,
  untilMs: number,
): void {
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

/** A random element of `list` (undefined when empty). */
export function pick<T>(world: SimWorld, list: T[]): T | undefined {
  return list.length === 0 ? undefined : list[world.random.int(list.length)];
}

/** Network conditions `during` for `minMs` plus up to `spanMs`, then `after`. */
export function phase(
  world: SimWorld,
  during: Partial<NetConditions>,
  after: Partial<NetConditions>,
  timing: { minMs: number; spanMs: number },
): boolean {
  Object.assign(world.conditions, during);
  world.at(timing.minMs + world.random.next() * timing.spanMs, () => {
    Object.assign(world.conditions, after);
  });
  return true;
}

/** A simulation whose members others can see dead while they run (cut off). */
export interface IsolationHost extends FaultHost {
  readonly nodes: ReadonlyMap<string, unknown>;
  seenDead(id: string, dead: boolean): void;
}

/**
 * Cuts member `id` off from every other both ways, and makes the others see it
 * dead (as gossip would), for `minMs` plus up to `spanMs`; then heals every cut.
 */
export function isolate(
  sim: IsolationHost,
  id: string,
  timing: { minMs: number; spanMs: number },
): boolean {
  for (const other of sim.nodes.keys()) {
    if (other === id) continue;
    sim.world.cut(id, other);
    sim.world.cut(other, id);
  }
  sim.seenDead(id, true);
  sim.world.at(timing.minMs + sim.world.random.next() * timing.spanMs, () => {
    sim.world.heal();
    sim.seenDead(id, false);
  });
  return true;
}

/** Pauses member `id` (its deliveries wait) for `minMs` plus up to `spanMs`. */
export function pause(world: SimWorld, id: string, timing: { minMs: number; spanMs: number }) {
  world.pause(id, timing.minMs + world.random.next() * timing.spanMs);
  return true;
}
