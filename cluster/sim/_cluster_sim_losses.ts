/**
 * When acknowledged but unflushed writes may have been lost, for the volume
 * model (`_cluster_sim_model.ts`): a crash of any member (its copies in
 * memory go), and a takeover of the volume's lease (the old holder's map in
 * memory goes). A takeover is seen in the lease counters: a member counted
 * one, and then holds a lease it did not hold before (soon after). A takeover
 * deposes the holder of the lease it took: what that holder acknowledged under
 * it may be lost, before the takeover or after (a holder cut off learns late).
 *
 * @module
 */
import type { ClusterRuntime } from "./_cluster_sim_node.ts";
import type { ClusterSim } from "./cluster_sim.ts";

/** How often takeovers are looked for. */
const takeoverPollMs = 50;
/** A lease taken this long after a member counted a takeover counts as taken over. */
const takeoverWindowMs = 10_000;
/** Margin of the times of loss events (takeovers are polled). */
const lossSlackMs = 500;

/** The loss events of a run; see the module doc. */
export class LossWatch {
  #sim: ClusterSim;
  /** Times each volume's lease was taken over, and by whom. */
  #takeovers = new Map<string, { atMs: number; by: string }[]>();
  /** Times each member came to hold each volume's lease: volume → member → times. */
  #acquired = new Map<string, Map<string, number[]>>();
  /** Looks for takeovers now (also every {@linkcode takeoverPollMs}). */
  #poll: () => void = () => {};

  constructor(sim: ClusterSim) {
    this.#sim = sim;
  }

  /** Watches the leases of the volumes `names()` lists, until the run ends. */
  start(names: () => string[]): void {
    const seen = new Map<
      ClusterRuntime,
      { takeovers: number; untilMs: number; held: Set<string> }
    >();
    this.#poll = () => {
      const volumes = names();
      const now = this.#sim.world.now();
      for (const node of this.#sim.running()) {
        const runtime = node.runtime!;
        const held = new Set(volumes.filter((name) => runtime.leases.holds(name)));
        const { takeovers } = runtime.leases.counters;
        const before = seen.get(runtime) ?? { takeovers: 0, untilMs: 0, held };
        // Which volume a takeover was for is not counted: every lease the member
        // takes soon after counts as taken over (conservative).
        const untilMs = takeovers > before.takeovers ? now + takeoverWindowMs : before.untilMs;
        for (const name of held) {
          if (before.held.has(name)) continue;
          if (!this.#acquired.has(name)) this.#acquired.set(name, new Map());
          const acquired = this.#acquired.get(name)!;
          acquired.set(node.id, [...acquired.get(node.id) ?? [], now]);
          if (now > untilMs) continue;
          const times = this.#takeovers.get(name) ?? [];
          times.push({ atMs: now, by: node.id });
          this.#takeovers.set(name, times);
          this.#sim.note(`${node.id} took volume "${name}" over`);
        }
        seen.set(runtime, { takeovers, untilMs, held });
      }
    };
    const poll = () => {
      this.#poll();
      this.#sim.world.at(takeoverPollMs, poll);
    };
    poll();
  }

  /**
   * True when a crash, or a takeover by another member, may have dropped
   * writes to volume `name` that members acknowledged since the times given
   * (`dirtySince`: member → when it first acknowledged one since the last flush).
   */
  lost(name: string, dirtySince: Map<string, number>): boolean {
    this.#poll(); // an operation that just ended may have taken the lease over
    const takeovers = this.#takeovers.get(name) ?? [];
    return [...dirtySince].some(([node, sinceMs]) => {
      // The lease `node` acknowledged under: the last it came to hold before then.
      const heldSince = (this.#acquired.get(name)?.get(node) ?? [])
        .filter((atMs) => atMs <= sinceMs + lossSlackMs).at(-1) ?? sinceMs;
      return this.#sim.crashTimes.some((atMs) => atMs >= sinceMs - lossSlackMs) ||
        takeovers.some(({ atMs, by }) =>
          by !== node && atMs >= Math.min(sinceMs, heldSince) - lossSlackMs
        );
    });
  }
}
