/**
 * The member list placement takes: a member's shape, the limits on members and
 * weights, and the check of the list at the edge (sorted by id, so that input
 * order never counts).
 *
 * @module
 */

import { assert } from "../../core/assert.ts";

/** A member as placement sees it. */
export interface PlacementMember {
  /** Unique, non-empty identity; its hash seeds the member's scores, so keep it stable. */
  id: string;
  /** Share of data to hold, proportional to capacity (any unit, > 0). */
  weight: number;
  /** Failure domain (rack, room, site); `null` makes the member a zone of its own. */
  zone: string | null;
}

/** Most members one placement takes: bounds its per-call scratch arrays. */
export const placementMembersMax = 65_536;
/** Smallest member weight: keeps `-ln(u) / weight` a normal double for every u. */
export const memberWeightMin = 2 ** -32;
/** Largest member weight: with {@linkcode memberWeightMin}, every weight ratio counts. */
export const memberWeightMax = 2 ** 64;

assert(Number.isSafeInteger(placementMembersMax) && placementMembersMax >= 1);
assert(memberWeightMin > 0 && memberWeightMin < memberWeightMax);
assert(Number.isFinite(1 / memberWeightMin) && 1 / memberWeightMax > 0);

/** Checks the member list at the edge and returns it sorted by id (input order never counts). */
export function validateMembers(members: readonly PlacementMember[]): PlacementMember[] {
  if (!Array.isArray(members)) {
    throw new TypeError("Cannot place replicas: members is not an array");
  }
  if (members.length > placementMembersMax) {
    throw new RangeError(
      `Cannot place replicas on ${members.length} members: at most ${placementMembersMax}`,
    );
  }
  const seen = new Set<string>();
  for (const [index, member] of members.entries()) {
    const what = `Cannot place replicas: member ${index}`;
    if (typeof member !== "object" || member === null) {
      throw new TypeError(`${what} is not an object`);
    }
    const { id, weight, zone } = member;
    if (typeof id !== "string" || id.length === 0) throw new TypeError(`${what} has no id`);
    if (seen.has(id)) throw new TypeError(`${what} repeats id "${id}"`);
    seen.add(id);
    if (typeof weight !== "number") throw new TypeError(`${what} ("${id}") has no numeric weight`);
    if (!(weight >= memberWeightMin && weight <= memberWeightMax)) {
      throw new RangeError(
        `${what} ("${id}") has weight ${weight}: expected [${memberWeightMin}, ${memberWeightMax}]`,
      );
    }
    if (zone !== null && (typeof zone !== "string" || zone.length === 0)) {
      throw new TypeError(`${what} ("${id}") has zone ${JSON.stringify(zone)}: a name or null`);
    }
  }
  return [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
