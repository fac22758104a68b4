/**
 * The members as the cluster engine places data on them: who holds a place
 * (alive, suspect, or dead for less than the grace period; every dead member
 * while this node sees no majority of the members live), who is live, who
 * counts as dead for a write, and the placement over them, rebuilt when the
 * membership changes and each second (dead members age out of it without a
 * membership event).
 */
import { Placement } from "./placement/mod.ts";
import type { BlockPeer } from "./data/mod.ts";
import type { MemberState } from "./membership/mod.ts";

/** What {@linkcode MemberView} needs of its engine. */
export interface MemberViewOptions {
  /** The members as gossip knows them, this node included. */
  members: () => MemberState[];
  /** The clock of `members()`'s `since`. */
  now: () => number;
  deadGraceMs: number;
  replicaCount: number;
}

/** The members of one engine; see the module doc (ClusterEngine documents each method). */
export class MemberView {
  #members: () => MemberState[];
  #now: () => number;
  #deadGraceMs: number;
  #replicaCount: number;
  #view: { at: number; placement: Placement; byId: Map<string, MemberState> } | null = null;

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
    return this.#members().filter((member) =>
      member.status === "alive" || member.status === "suspect" ||
      (member.status === "dead" && (!majority || now - member.since < this.#deadGraceMs))
    );
  }

  liveMembers(): MemberState[] {
    return this.#members().filter((member) =>
      member.status === "alive" || member.status === "suspect"
    );
  }

  replicaPeers(name: string): BlockPeer[] {
    const view = this.#currentView();
    return view.placement.replicas(name, this.#replicaCount).map((id) => {
      const member = view.byId.get(id)!;
      return { id, address: member.address };
    });
  }

  countsDead(id: string): boolean {
    return this.member(id)?.status === "dead" && this.seesMajority();
  }

  seesMajority(): boolean {
    const members = this.#members().filter((member) => member.status !== "left");
    return 2 * this.liveMembers().length > members.length;
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
      const members = this.placementMembers();
      this.#view = {
        at: this.#now(),
        placement: new Placement(
          members.map(({ id, weight, zone }) => ({ id, weight: Math.max(weight, 2 ** -32), zone })),
        ),
        byId: new Map(this.#members().map((member) => [member.id, member])),
      };
    }
    return this.#view;
  }
}
