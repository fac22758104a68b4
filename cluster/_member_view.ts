/**
 * The members as the cluster engine places data on them: who holds a place
 * (alive, suspect, or dead or left for less than the grace period; every dead
 * member while this node sees no majority of the members live), who is live, who
 * counts as dead for a write, and the placement over them, rebuilt when the
 * membership changes and each second (dead members age out of it without a
 * membership event).
 *
 * Members learn of a join after their own gossip lag and place on the members
 * they know meanwhile: the read path does not trust replicas that disagree or
 * may be new to an object (data/_replica_copies.ts), and a lease moves only
 * once its taker knows every member its holder placed data on.
 */
import { Placement } from "./placement/mod.ts";
import { type BlockPeer, placementDigest } from "./data/mod.ts";
import type { MemberState } from "./membership/mod.ts";

/** How many grace periods a member called dead or gone is still asked by strict looks. */
export const goneAskedGraces = 10;

/** What {@linkcode MemberView} needs of its engine. */
export interface MemberViewOptions {
  /** The members as gossip knows them, this node included. */
  members: () => MemberState[];
  /** The clock of `members()`'s `since`. */
  now: () => number;
  deadGraceMs: number;
  replicaCount: number;
}

/** Names whose placement one view remembers (it lives a second at most). */
const placedPerViewMax = 16_384;

/** What a member's view is at one moment (renewed each second, or when told). */
interface View {
  at: number;
  placement: Placement;
  byId: Map<string, MemberState>;
  /** The placement over the members and every one gone; null when none is gone. */
  wide: Placement | null;
  /** The replicas `placement` gave each name asked so far (see placedPerViewMax). */
  placed: Map<string, { ids: string[]; digest: number | null }>;
}

/** The members of one engine; see the module doc (ClusterEngine documents each method). */
export class MemberView {
  #members: () => MemberState[];
  #now: () => number;
  #deadGraceMs: number;
  #replicaCount: number;
  #view: View | null = null;

  constructor(options: MemberViewOptions) {
    this.#members = options.members;
    this.#now = options.now;
    this.#deadGraceMs = options.deadGraceMs;
    this.#replicaCount = options.replicaCount;
  }

  invalidate(): void {
    this.#view = null;
  }

  placementMembers(): MemberState[] {
    const now = this.#now();
    // A node that sees no majority live keeps the dead in their places: what it
    // sees may be its own isolation, and a placement shrunk to the members it
    // still sees would let it acknowledge writes on its own copy alone.
    const majority = this.seesMajority();
    // A member that left keeps its place for the grace too, as a dead one does: it
    // took its copies with it, and a placement that dropped it at once counted a
    // member new to an object (a stale copy left over there) as its replica while the
    // other, holding the newest, did not answer (seed 9106 with joins and leaves).
    const young = (member: MemberState) => now - member.since < this.#deadGraceMs;
    return this.#members().filter((member) =>
      member.status === "alive" || member.status === "suspect" ||
      (member.status === "dead" && (!majority || young(member))) ||
      (member.status === "left" && young(member))
    );
  }

  /**
   * Members gossip has called dead or gone for less than `goneAskedGraces` grace
   * periods: a look that must hear every member that may hold an object's newest
   * copy asks them too (data/_copies_elsewhere.ts, stampsElsewhere), since a view
   * can call a member gone that runs and holds copies (a cut healed that gossip
   * has not caught up with, a member back from a crash or a restart it has not
   * heard of: one that left takes its copies with it and brings them back).
   */
  recentlyGone(graces: number = goneAskedGraces): MemberState[] {
    const now = this.#now();
    return this.#members().filter((member) =>
      (member.status === "dead" || member.status === "left") &&
      now - member.since < graces * this.#deadGraceMs
    );
  }

  /**
   * Members gossip has called dead or gone for `goneAskedGraces` grace periods or
   * longer (while it remembers them): no look asks them, and they may hold copies
   * all the same (data/_copy_checks.ts, checkAwayUnlessLost).
   */
  longGone(): MemberState[] {
    const now = this.#now();
    return this.#members().filter((member) =>
      (member.status === "dead" || member.status === "left") &&
      now - member.since >= goneAskedGraces * this.#deadGraceMs
    );
  }

  /**
   * The ids of `name`'s replicas, placed over the members together with every
   * member gossip calls dead or gone, that are gone: they may hold its only
   * up-to-date copies (data/_copy_checks.ts, checkGone), and unless an operator
   * declared them lost (lost_members.ts) may come back with them.
   */
  goneReplicas(name: string): string[] {
    const view = this.#currentView();
    if (view.wide === null) return [];
    return view.wide.replicas(name, this.#replicaCount).filter((id) => {
      const status = view.byId.get(id)?.status;
      return status === "dead" || status === "left";
    });
  }

  liveMembers(): MemberState[] {
    return this.#members().filter((member) =>
      member.status === "alive" || member.status === "suspect"
    );
  }

  replicaPeers(name: string): BlockPeer[] {
    const view = this.#currentView();
    return this.#placed(view, name).ids.map((id) => {
      const member = view.byId.get(id)!;
      return { id, address: member.address };
    });
  }

  /** True when the placement puts a replica of `name` on member `id`. */
  places(name: string, id: string): boolean {
    return this.#placed(this.#currentView(), name).ids.includes(id);
  }

  /** placementDigest of `name`'s replicas (what a replica checks each change against). */
  placementDigestOf(name: string): number {
    const placed = this.#placed(this.#currentView(), name);
    placed.digest ??= placementDigest(placed.ids);
    return placed.digest;
  }

  /**
   * Where `view` places `name`, remembered for the view's life (a second at
   * most): a lease holder places an object at each read and write of it, and a
   * replica at each change it takes.
   */
  #placed(view: View, name: string) {
    let placed = view.placed.get(name);
    if (placed === undefined) {
      if (view.placed.size >= placedPerViewMax) view.placed.clear();
      placed = { ids: view.placement.replicas(name, this.#replicaCount), digest: null };
      view.placed.set(name, placed);
    }
    return placed;
  }

  /**
   * True when a write may go on without replica `id`: gossip says it is dead,
   * and this node sees a majority of the members live. A node cut off from the
   * others sees them all dead; without the second rule a lease holder on the
   * wrong side of a partition would acknowledge writes on its own copy that the
   * holder taking over never sees.
   */
  countsDead(id: string): boolean {
    const status = this.member(id)?.status;
    return (status === "dead" || status === "left") && this.seesMajority();
  }

  /**
   * True when this node sees a majority of the members live. A node that does
   * not may be cut off, and its leases taken over by the others: it serves no
   * reads or writes of the volumes it holds until it sees a majority again.
   */
  seesMajority(): boolean {
    let counted = 0, live = 0;
    for (const { status } of this.#members()) {
      if (status === "left") continue;
      counted++;
      if (status === "alive" || status === "suspect") live++;
    }
    return 2 * live > counted;
  }

  member(id: string): MemberState | undefined {
    return this.#members().find((member) => member.id === id);
  }

  isLive(id: string): boolean {
    const status = this.#currentView().byId.get(id)?.status;
    return status === "alive" || status === "suspect";
  }

  #currentView() {
    // Dead members age out of placement without a membership event: re-check each second.
    if (this.#view === null || this.#now() - this.#view.at > 1000) {
      const placed = this.placementMembers();
      const isGone = (member: MemberState) => member.status === "dead" || member.status === "left";
      const gone = this.#members().filter((member) =>
        isGone(member) && !placed.some((other) => other.id === member.id)
      );
      const wide = [...placed, ...gone];
      this.#view = {
        at: this.#now(),
        placement: placementOver(placed),
        byId: new Map(this.#members().map((member) => [member.id, member])),
        wide: wide.some(isGone) ? placementOver(wide) : null,
        placed: new Map(),
      };
    }
    return this.#view;
  }
}

function placementOver(members: MemberState[]): Placement {
  return new Placement(
    members.map(({ id, weight, zone }) => ({ id, weight: Math.max(weight, 2 ** -32), zone })),
  );
}
