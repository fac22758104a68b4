/**
 * Gossip as the whole-cluster simulation models it (as `meta_sim.ts` does):
 * the world keeps each member's status changes in time order, and each member
 * sees a change after its own lag, fixed by the seed (`lagMs`). Members
 * configured together know each other from the start; a member that joins
 * knows the members it joins at once (push-pull), and the others learn of it
 * after their lag.
 *
 * @module
 */
import type { MemberState } from "../membership/mod.ts";
import { lagMs } from "./_sim_node.ts";

/** What the others see of a member: a crash is seen as dead, a graceful stop as left. */
export type SeenStatus = "alive" | "dead" | "left";

/** See the module doc. */
export class SimViews {
  readonly #seed: number;
  /** Status changes of each member as the world sees them, in time order. */
  #history = new Map<string, { atMs: number; status: SeenStatus }[]>();
  /** When members that joined the running cluster joined. */
  #joined = new Map<string, number>();

  constructor(seed: number) {
    this.#seed = seed;
  }

  /** A member configured with the others (`joinedAtMs` absent) or joining at that time. */
  add(id: string, atMs: number, joining: boolean): void {
    if (joining) this.#joined.set(id, atMs);
    this.#history.set(id, [{ atMs, status: "alive" }]);
  }

  /** Member `id` has `status` from `atMs` on (nothing when it already had). */
  set(id: string, status: SeenStatus, atMs: number): void {
    const history = this.#history.get(id)!;
    if (history[history.length - 1].status !== status) history.push({ atMs, status });
  }

  /** The members as `viewer` sees them at `now`. */
  view(viewer: string, now: number): MemberState[] {
    const view: MemberState[] = [];
    for (const [id, history] of this.#history) {
      let seen: { atMs: number; status: SeenStatus } | null = null;
      let sinceMs = 0;
      history.forEach((change, i) => {
        const known = i === 0 && (this.#joined.get(id) ?? 0) <= (this.#joined.get(viewer) ?? 0);
        const lag = id === viewer || known ? 0 : lagMs(this.#seed, viewer, id, i);
        const at = change.atMs + lag;
        if (at <= now) {
          seen = change;
          sinceMs = at;
        }
      });
      if (seen === null) continue;
      // A running member always sees itself alive (gossip refutes its own death).
      const status = id === viewer ? "alive" : (seen as { status: SeenStatus }).status;
      view.push({ id, address: id, zone: null, weight: 1, incarnation: 0, status, since: sinceMs });
    }
    return view;
  }
}
