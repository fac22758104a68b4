/**
 * Members an operator declared lost: gone for good, disk and all, so that the
 * copies only they held are given up (as Ceph's `osd lost`). Until then an
 * object most of whose replicas are on gone members stays unavailable
 * (data/_copy_checks.ts, checkGone): they may come back with its only
 * up-to-date copies. Kept in the cluster's metadata, one CASPaxos register per
 * member, `lost/ID` (the id in hex), moved with every other key when the voters change; a
 * declaration is never taken back.
 */
import { ConflictError, NotFoundError } from "../core/mod.ts";
import type { Proposer } from "./meta/mod.ts";
import type { MemberState } from "./membership/mod.ts";
import type { MemberView } from "./_member_view.ts";

/** How long a member found not declared lost is not asked again. */
const notLostRecheckMs = 1_000;

/** What {@linkcode LostMembers} needs of its engine. */
export interface LostMembersOptions {
  /** The metadata registers (a function: the proposer is built after the view). */
  proposer: () => Proposer;
  /** The members gossip knows, this node included. */
  members: () => MemberState[];
  now: () => number;
}

/** See the module doc. */
export class LostMembers {
  #options: LostMembersOptions;
  /** Declared lost: permanent. */
  #lost = new Set<string>();
  /** Members found not declared lost, and when. */
  #checked = new Map<string, number>();

  constructor(options: LostMembersOptions) {
    this.#options = options;
  }

  /** The members known declared lost (on this node: declared here or found since). */
  known(): ReadonlySet<string> {
    return this.#lost;
  }

  /**
   * Declares member `id` lost. Refused while gossip sees it alive or suspect
   * (stop it first) and for a member gossip does not know; declaring a member
   * lost again changes nothing.
   */
  async declare(id: string): Promise<void> {
    const member = this.#options.members().find((member) => member.id === id);
    if (member === undefined) {
      throw new NotFoundError(`Cannot declare member ${JSON.stringify(id)} lost: no such member`);
    }
    if (member.status === "alive" || member.status === "suspect") {
      throw new ConflictError(
        `Cannot declare member ${id} lost: it is ${member.status}; stop it for good first`,
      );
    }
    const at = new Date(this.#options.now()).toISOString();
    await this.#options.proposer().change(key(id), (current) =>
      current.value !== null ? current : {
        version: current.version + 1,
        value: new TextEncoder().encode(JSON.stringify({ id, at })),
      });
    this.#lost.add(id);
  }

  /**
   * Which of `ids` are declared lost, asking the metadata for those not known
   * lost and not asked within the last second.
   */
  async refresh(ids: string[]): Promise<ReadonlySet<string>> {
    const now = this.#options.now();
    const unsure = ids.filter((id) =>
      !this.#lost.has(id) && now - (this.#checked.get(id) ?? -Infinity) >= notLostRecheckMs
    );
    await Promise.all(unsure.map(async (id) => {
      const entry = await this.#options.proposer().read(key(id));
      if (entry.value !== null) this.#lost.add(id);
      else this.#checked.set(id, now);
    }));
    return this.#lost;
  }

  /**
   * True when every one of `ids` was declared lost (a floor only they held no
   * longer binds: data/object_floors.ts, Floor). A member gossip sees running
   * is not lost, and the metadata is not asked then.
   */
  async allLost(ids: string[]): Promise<boolean> {
    const running = new Set(
      this.#options.members().filter((member) =>
        member.status === "alive" || member.status === "suspect"
      ).map((member) => member.id),
    );
    if (ids.some((id) => running.has(id))) return false;
    const declared = await this.refresh(ids);
    return ids.every((id) => declared.has(id));
  }
}

/**
 * How many of `name`'s replicas (R = `replicas`) are gone with copies it must
 * wait for (MemberView.goneReplicas, data/_copy_checks.ts checkGone): when
 * enough are gone to hold every copy of its last flush, all of them unless each
 * was declared lost (then nothing is left to wait for; whether one was declared
 * since is asked first). One declared lost among them counts still: the newest
 * copies may survive on the others alone.
 */
export async function goneReplicaCount(
  view: MemberView,
  lost: LostMembers,
  name: string,
  replicas: number,
): Promise<number> {
  const gone = view.goneReplicas(name);
  if (gone.length < Math.floor(replicas / 2) + 1) return gone.length;
  const declared = await lost.refresh(gone);
  return gone.every((id) => declared.has(id)) ? 0 : gone.length;
}

/** The register of member `id` (hex: an id may hold characters a key may not). */
function key(id: string): string {
  return `lost/${
    [...new TextEncoder().encode(id)].map((b) => b.toString(16).padStart(2, "0")).join("")
  }`;
}
