/**
 * When acknowledged but unflushed writes may have been lost, for the volume
 * model (`_cluster_sim_model.ts`): a crash of any member (its copies in
 * memory go), and a takeover of the volume's lease (the old holder's map in
 * memory goes). A takeover is seen when a member begins one (LeaseManager.
 * takeoversOf), whether or not it then wins the record (its fence deposes the
 * holder), and again when the member holds the lease it took (the lease
 * counters, then a lease it did not hold before, soon after). What the deposed
 * holder acknowledged under its lease may be lost, before the takeover or after
 * (a holder cut off learns late).
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
    const seen = new Map<ClusterRuntime, {
      takeovers: number;
      untilMs: number;
      held: Set<string>;
      of: Map<string, number>;
    }>();
    const takeover = (name: string, atMs: number, by: string, what: string) => {
      const times = this.#takeovers.get(name) ?? [];
      times.push({ atMs, by });
      this.#takeovers.set(name, times);
      this.#sim.note(`${by} ${what} volume "${name}" over`);
    };
    this.#poll = () => {
      const volumes = names();
      const now = this.#sim.world.now();
      for (const node of this.#sim.running()) {
        const runtime = node.runtime!;
        const held = new Set(volumes.filter((name) => runtime.leases.holds(name)));
        const { takeovers } = runtime.leases.counters;
        const before = seen.get(runtime) ?? { takeovers: 0, untilMs: 0, held, of: new Map() };
        // A takeover begun deposes the holder when it fences, whether or not it then
        // wins the record (seed 230346 with --boot-reads: one that lost the record's
        // compare-and-set fenced the holder, which took its own lease again from its
        // last flushed map).
        const of = new Map(volumes.map((name) => [name, runtime.leases.takeoversOf(name)]));
        for (const [name, count] of of) {
          if (count > (before.of.get(name) ?? 0)) takeover(name, now, node.id, "takes");
        }
        // And it ends when the member holds the lease, maybe well after: writes the old
        // holder acknowledged until then may be lost too. Every lease the member takes
        // soon after a takeover counts (conservative).
        const untilMs = takeovers > before.takeovers ? now + takeoverWindowMs : before.untilMs;
        for (const name of held) {
          if (before.held.has(name)) continue;
          if (!this.#acquired.has(name)) this.#acquired.set(name, new Map());
          const acquired = this.#acquired.get(name)!;
          acquired.set(node.id, [...acquired.get(node.id) ?? [], now]);
          if (now <= untilMs) takeover(name, now, node.id, "took");
        }
        seen.set(runtime, { takeovers, untilMs, held, of });
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
