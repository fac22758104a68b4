/**
 * The member table and SWIM's ordering rules: which update about a member wins, given
 * incarnations and statuses. Pure bookkeeping; the caller supplies the effects (queue an
 * update for gossip, tell listeners, refute, start and stop suspicion timers).
 *
 * Rules, for a member other than this node (i = the update's incarnation, j = ours):
 * - alive(i) wins over anything when i > j (a rejoin after "left" included);
 * - suspect(i) wins over alive when i >= j, and over suspect when i > j; at i = j it is a
 *   confirmation (another accuser); dead and left ignore it;
 * - dead(i) wins over alive and suspect when i >= j; left ignores it ("left" is final);
 * - left(i) wins over alive, suspect and dead when i >= j.
 * About this node: suspect, dead or left at i >= j, or alive at i > j (or at i = j with
 * other info), is refuted by a higher incarnation, unless the node is leaving.
 *
 * @module
 */

import { assert } from "../../core/assert.ts";
import type { MemberDigest, MemberInfo, MemberStatus, Update } from "./messages.ts";

/** One member as this node sees it (one flat object: a simulation holds N² of them). */
export interface Member extends MemberInfo {
  incarnation: number;
  status: MemberStatus;
  /** Time of the last status change. */
  since: number;
  /** Distinct ids that reported the current suspicion (null unless suspect). */
  accusers: Set<string> | null;
  /** Time this node started suspecting, for the suspicion timeout. */
  suspectedAt: number;
}

/** What the table asks of its owner when an update changes something. */
export interface TableEffects {
  now(): number;
  /** Re-gossip `update` (when the caller asked for rebroadcasts). */
  broadcast(update: Update): void;
  /** `member`'s status or incarnation changed (or it is new). */
  changed(member: Member): void;
  /** `member` was not known before (called before `changed`). */
  added(member: Member): void;
  /** Someone says this node is not alive at `incarnation` or later: refute. */
  refute(incarnation: number): void;
  /** `member` became suspect, or its suspicion gained an accuser: (re)arm its timer. */
  suspicionChanged(member: Member): void;
  /** Whether to re-gossip `accuser`'s confirmation of a suspicion we already hold. */
  relayConfirmation(member: Member, accuser: string): boolean;
  /** `member` is no longer suspect: drop its timer. */
  suspicionEnded(member: Member): void;
}

/** Members by id, with SWIM's rules for applying updates. */
export class MemberTable {
  readonly self: Member;
  readonly #byId = new Map<string, Member>();
  /** Every member but this node, for random choices (rebuilt when members are forgotten). */
  #peers: Member[] = [];
  #live = 1;
  #leaving = false;
  readonly #effects: TableEffects;

  constructor(self: MemberInfo, effects: TableEffects) {
    this.#effects = effects;
    this.self = newMember(self, 0, "alive", effects.now());
    this.#byId.set(self.id, this.self);
  }

  /** Members alive or suspect, this node included while it has not left. */
  get live(): number {
    return this.#live;
  }

  /** Every member but this node (do not modify). */
  get peers(): readonly Member[] {
    return this.#peers;
  }

  /** Members known, this node included. */
  get size(): number {
    return this.#byId.size;
  }

  /** Every member, this node included. */
  all(): IterableIterator<Member> {
    return this.#byId.values();
  }

  /** The member with id `id`, if known. */
  get(id: string): Member | undefined {
    return this.#byId.get(id);
  }

  /** Marks this node as left: from now on nothing said about it is refuted. */
  leave(): void {
    this.#leaving = true;
    this.#setStatus(this.self, "left");
    this.#effects.changed(this.self);
  }

  /** Raises this node's incarnation above `incarnation`. */
  bumpSelf(incarnation: number): void {
    this.self.incarnation = Math.max(this.self.incarnation, incarnation) + 1;
    this.#effects.changed(this.self);
  }

  /** Applies `update`; re-gossips it if it changed our view and `rebroadcast` is set. */
  apply(update: Update, rebroadcast: boolean): void {
    if (update.id === this.self.id) {
      this.#applyAboutSelf(update.incarnation, update.kind === "alive" ? update : null);
      return;
    }
    let changed: boolean;
    switch (update.kind) {
      case "alive":
        changed = this.#applyAlive(update);
        break;
      case "suspect":
        changed = this.#applySuspect(update.id, update.incarnation, update.from);
        break;
      case "dead":
        changed = this.#applyEnd(update.id, update.incarnation, "dead");
        break;
      case "left":
        changed = this.#applyEnd(update.id, update.incarnation, "left");
        break;
    }
    if (changed && rebroadcast) this.#effects.broadcast(update);
  }

  /**
   * Applies one entry of a push-pull state from `source`. A "dead" entry is only suspected
   * (memberlist's rule): its subject, if alive, gets the chance to refute.
   */
  applyDigest(digest: MemberDigest, source: string, rebroadcast: boolean): void {
    const { id, incarnation } = digest;
    const kind = digest.status === "dead" ? "suspect" : digest.status;
    if (id === this.self.id) {
      this.#applyAboutSelf(incarnation, kind === "alive" ? digest : null);
      return;
    }
    let changed: boolean;
    switch (kind) {
      case "alive":
        changed = this.#applyAlive(digest);
        if (changed && rebroadcast) {
          const { address, zone, weight } = digest;
          this.#effects.broadcast({ kind, id, address, zone, weight, incarnation });
        }
        return;
      case "suspect":
        changed = this.#applySuspect(id, incarnation, source);
        if (changed && rebroadcast) {
          this.#effects.broadcast({ kind, id, incarnation, from: source });
        }
        return;
      case "left":
        changed = this.#applyEnd(id, incarnation, "left");
        if (changed && rebroadcast) this.#effects.broadcast({ kind, id, incarnation });
        return;
    }
  }

  /**
   * Drops dead and left members older than `retainMs` but those `keep` names;
   * returns how many.
   */
  forget(retainMs: number, keep: (id: string) => boolean = () => false): number {
    const now = this.#effects.now();
    let forgotten = 0;
    for (const member of this.#peers) {
      if (isLive(member) || now - member.since <= retainMs || keep(member.id)) continue;
      this.#byId.delete(member.id);
      forgotten += 1;
    }
    if (forgotten > 0) this.#peers = this.#peers.filter((m) => this.#byId.get(m.id) === m);
    return forgotten;
  }

  /** Refutes anything about this node but "alive" with what we already say (`info`). */
  #applyAboutSelf(incarnation: number, info: MemberInfo | null): void {
    const self = this.self;
    if (this.#leaving || incarnation < self.incarnation) return;
    if (info !== null && incarnation === self.incarnation && sameInfo(info, self)) return;
    this.#effects.refute(incarnation);
  }

  #applyAlive(update: MemberInfo & { incarnation: number }): boolean {
    const known = this.#byId.get(update.id);
    if (known === undefined) {
      const member = newMember(update, update.incarnation, "alive", this.#effects.now());
      this.#byId.set(member.id, member);
      this.#peers.push(member);
      this.#live += 1;
      this.#effects.added(member);
      this.#effects.changed(member);
      return true;
    }
    if (update.incarnation <= known.incarnation) return false;
    known.address = update.address;
    known.zone = update.zone;
    known.weight = update.weight;
    known.incarnation = update.incarnation;
    this.#endSuspicion(known);
    this.#setStatus(known, "alive");
    this.#effects.changed(known);
    return true;
  }

  #applySuspect(id: string, incarnation: number, accuser: string): boolean {
    const member = this.#byId.get(id);
    if (member === undefined || !isLive(member) || incarnation < member.incarnation) return false;
    if (member.status === "suspect" && incarnation === member.incarnation) {
      assert(member.accusers !== null, "a suspect has accusers");
      if (member.accusers.has(accuser)) return false;
      member.accusers.add(accuser);
      this.#effects.suspicionChanged(member);
      return this.#effects.relayConfirmation(member, accuser);
    }
    this.#endSuspicion(member);
    member.incarnation = incarnation;
    this.#setStatus(member, "suspect");
    member.accusers = new Set([accuser]);
    member.suspectedAt = this.#effects.now();
    this.#effects.suspicionChanged(member);
    this.#effects.changed(member);
    return true;
  }

  #applyEnd(id: string, incarnation: number, status: "dead" | "left"): boolean {
    const member = this.#byId.get(id);
    if (member === undefined || incarnation < member.incarnation) return false;
    if (member.status === "left" || member.status === status) return false;
    this.#endSuspicion(member);
    member.incarnation = incarnation;
    this.#setStatus(member, status);
    this.#effects.changed(member);
    return true;
  }

  #endSuspicion(member: Member): void {
    if (member.status !== "suspect") return;
    member.accusers = null;
    this.#effects.suspicionEnded(member);
  }

  #setStatus(member: Member, status: MemberStatus): void {
    if (member.status === status) return;
    this.#live += (liveStatus(status) ? 1 : 0) - (isLive(member) ? 1 : 0);
    member.status = status;
    member.since = this.#effects.now();
    assert(this.#live >= 0, "live member count went negative");
  }
}

/** True for members that take part: alive or suspect. */
export function isLive(member: Member): boolean {
  return liveStatus(member.status);
}

function liveStatus(status: MemberStatus): boolean {
  return status === "alive" || status === "suspect";
}

function newMember(
  info: MemberInfo,
  incarnation: number,
  status: MemberStatus,
  now: number,
): Member {
  const { id, address, zone, weight } = info;
  return {
    id,
    address,
    zone,
    weight,
    incarnation,
    status,
    since: now,
    accusers: null,
    suspectedAt: 0,
  };
}

function sameInfo(a: MemberInfo, b: MemberInfo): boolean {
  return a.address === b.address && a.zone === b.zone && a.weight === b.weight;
}
