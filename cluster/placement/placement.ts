/**
 * Placement: which cluster members hold a block, object or metadata key.
 *
 * Weighted rendezvous hashing (highest random weight, logarithmic method): for a name,
 * member `i` draws `u_i` in (0, 1) from hash(name, member id) and scores
 * `weight_i / -ln(u_i)`; `-ln(u_i) / weight_i` is exponential with rate `weight_i`, so the
 * best score is member `i`'s with probability `weight_i / Σ weight`. Whether one member
 * outranks another for a name depends on those two members only, so a join or a leave
 * moves replicas only to the member that joined or from the member that left.
 *
 * Zones ("R distinct nodes, distinct zones first"): walk members by descending score,
 * take the best member of each not-yet-used zone until min(R, zones) zones are covered,
 * then fill the remaining slots by score. A member whose zone is `null` is a zone of its
 * own, so a cluster without zones is plain rendezvous hashing. Zone diversity keeps the
 * movement property (each name's set changes by at most the member that joined or left;
 * placement_test.ts checks it), but not the amount:
 * - every zone among the first min(R, zones) holds one replica per name whatever its
 *   capacity, so zones should be of similar capacity, and a member that is a zone of its
 *   own in a zoned cluster (a new zone, or a `null` zone among named ones) takes more than
 *   its share: joining 12 members in 3 zones, it moves 1.5/N of the data with R = 3 and
 *   3.25/N with R = 4 (every name then wants it);
 * - a member joining or leaving a zone of the same size as the others moves about 1/N.
 *
 * Weights: with R = 1 each member's share is its weight's share. With R > 1 a member
 * holds at most one replica of a name, so a member whose weight is a large part of the
 * total falls short of it (weights 1, 2, 3, 4 on 4 members with R = 3: 0.77 of its target
 * for the heaviest); with many members of mixed weights the shares are within 1%.
 *
 * The answer depends only on the member set (not its order) and the name, through
 * integer hashing and one `Math.log`, which V8 computes identically on every platform.
 *
 * @module
 */

import { assert } from "../../core/assert.ts";
import { murmur3String128, unitFromHash } from "./_hash64.ts";
import {
  memberWeightMax,
  memberWeightMin,
  type PlacementMember,
  placementMembersMax,
  validateMembers,
} from "./_placement_members.ts";

export { memberWeightMax, memberWeightMin, type PlacementMember, placementMembersMax };

/** Seed of the name hash; part of the placement format (changing it moves all data). */
const nameHashSeed = 0;
/** Seed of the member-id hash, distinct from the name's so the two never coincide. */
const memberHashSeed = 0x5bd1e995;

/**
 * Factor that keeps the key floor `(1 - u) / weight` below the computed key even where
 * -ln(u) and 1 - u differ by less than a rounding error (u within 2^-26 of 1).
 */
const keyFloorSlack = 1 - 2 ** -30;

/**
 * Members of a cluster, prepared once (member seeds, inverse weights, zone numbers) so
 * that placing a name costs one string hash, one 64-bit mix per member, and a logarithm
 * only for the few members that may be chosen. Immutable: build a new one when the
 * membership changes. Calls share scratch arrays, which is safe because they are
 * synchronous.
 *
 * @example
 * ```ts
 * const placement = new Placement([
 *   { id: "node-a", weight: 4, zone: "rack-1" },
 *   { id: "node-b", weight: 4, zone: "rack-2" },
 *   { id: "node-c", weight: 8, zone: "rack-2" },
 * ]);
 * placement.replicas("volume/vm1", 2); // ["node-c", "node-a"]
 * ```
 */
export class Placement {
  /** Member ids in code-unit order; a member's index is its rank in this order. */
  readonly ids: readonly string[];
  /** Number of distinct zones, counting every `null`-zone member as one. */
  readonly zoneCount: number;
  readonly #seedHi: Int32Array;
  readonly #seedLo: Int32Array;
  readonly #inverseWeight: Float64Array;
  readonly #zoneOf: Int32Array;
  /** False when every zone has one member: each member is then its zone's best. */
  readonly #zonesShared: boolean;
  // Scratch of one call: each member's u and key (-1 until computed), each zone's best
  // member, the chosen members in order, and which members are taken.
  readonly #unit: Float64Array;
  readonly #key: Float64Array;
  readonly #zoneBest: Int32Array;
  readonly #chosen: Int32Array;
  readonly #taken: Uint8Array;
  readonly #hash = new Uint32Array(4);

  /**
   * @throws {TypeError} when `members` is not an array of `{id, weight, zone}`, an id is
   * empty or repeated, or a zone is an empty string.
   * @throws {RangeError} when a weight is not a number in
   * [{@linkcode memberWeightMin}, {@linkcode memberWeightMax}], or there are more than
   * {@linkcode placementMembersMax} members.
   */
  constructor(members: readonly PlacementMember[]) {
    const sorted = validateMembers(members);
    const count = sorted.length;
    this.ids = Object.freeze(sorted.map((member) => member.id));
    this.#seedHi = new Int32Array(count);
    this.#seedLo = new Int32Array(count);
    this.#inverseWeight = new Float64Array(count);
    this.#zoneOf = new Int32Array(count);
    const zoneIndex = new Map<string, number>();
    let zoneCount = 0;
    for (let index = 0; index < count; index++) {
      const { id, weight, zone } = sorted[index];
      murmur3String128(id, memberHashSeed, this.#hash);
      this.#seedHi[index] = this.#hash[0];
      this.#seedLo[index] = this.#hash[1];
      this.#inverseWeight[index] = 1 / weight;
      let zoneNumber = zone === null ? undefined : zoneIndex.get(zone);
      if (zoneNumber === undefined) {
        zoneNumber = zoneCount++;
        if (zone !== null) zoneIndex.set(zone, zoneNumber);
      }
      this.#zoneOf[index] = zoneNumber;
    }
    this.zoneCount = zoneCount;
    this.#zonesShared = zoneCount < count;
    this.#unit = new Float64Array(count);
    this.#key = new Float64Array(count);
    this.#zoneBest = new Int32Array(zoneCount);
    if (!this.#zonesShared) {
      for (let member = 0; member < count; member++) this.#zoneBest[this.#zoneOf[member]] = member;
    }
    this.#chosen = new Int32Array(count);
    this.#taken = new Uint8Array(count);
  }

  /**
   * The `replicas` distinct members that hold `name`, most preferred first. The first
   * min(replicas, zoneCount) of them are in distinct zones. A shorter list is a prefix of
   * a longer one, so raising the replica count only adds members. Asking for more
   * replicas than there are members returns every member; no members, `[]`.
   *
   * @throws {TypeError} when `name` is not a string or `replicas` is not a number.
   * @throws {RangeError} when `replicas` is not an integer ≥ 1.
   */
  replicas(name: string, replicas: number): string[] {
    if (typeof name !== "string") {
      throw new TypeError(`Cannot place a name of type ${typeof name}: expected a string`);
    }
    validateReplicaCount(replicas);
    const count = Math.min(replicas, this.ids.length);
    if (count === 0) return [];
    this.#draw(name);
    if (this.#zonesShared) this.#findZoneBests();
    const zonesWanted = Math.min(count, this.zoneCount);
    let filled = 0;
    const zoneBest = this.#zoneBest;
    for (let zone = 0; zone < zoneBest.length; zone++) {
      filled = this.#offer(zoneBest[zone], 0, filled, zonesWanted);
    }
    assert(filled === zonesWanted, "every wanted zone has a best member");
    for (let slot = 0; slot < zonesWanted; slot++) this.#taken[this.#chosen[slot]] = 1;
    this.#chooseRest(zonesWanted, count);
    const result = new Array<string>(count);
    for (let slot = 0; slot < count; slot++) {
      const member = this.#chosen[slot];
      assert(this.#taken[member] === 1, "a chosen member is taken exactly once");
      this.#taken[member] = 0;
      result[slot] = this.ids[member];
    }
    return result;
  }

  /** Draws every member's u for `name`; keys are computed later, only where needed. */
  #draw(name: string): void {
    murmur3String128(name, nameHashSeed, this.#hash);
    const nameHi = this.#hash[0], nameLo = this.#hash[1];
    const unit = this.#unit, seedHi = this.#seedHi, seedLo = this.#seedLo;
    for (let member = 0; member < unit.length; member++) {
      unit[member] = unitFromHash(nameHi, nameLo, seedHi[member], seedLo[member]);
    }
    this.#key.fill(-1);
  }

  /**
   * The member's key, `-ln(u) / weight`: lower is better, and the best of several is
   * member `i`'s with probability `weight_i / Σ weight`. The logarithm is the costly part,
   * so it is taken once per member and call, and only for members that may be chosen.
   */
  #keyOf(member: number): number {
    let key = this.#key[member];
    if (key < 0) {
      key = -Math.log(this.#unit[member]) * this.#inverseWeight[member];
      assert(key > 0 && this.#keyFloor(member) < key, "the key floor is below the key");
      this.#key[member] = key;
    }
    return key;
  }

  /** A cheap bound below the member's key: -ln(u) ≥ 1 - u, less a margin for rounding. */
  #keyFloor(member: number): number {
    return (1 - this.#unit[member]) * this.#inverseWeight[member] * keyFloorSlack;
  }

  /** True when member `a` outranks member `b`; ties (never seen) go to the lower id. */
  #before(a: number, b: number): boolean {
    const keyA = this.#keyOf(a), keyB = this.#keyOf(b);
    return keyA < keyB || (keyA === keyB && a < b);
  }

  /** Sets each zone's best member in `#zoneBest`. */
  #findZoneBests(): void {
    const zoneBest = this.#zoneBest, zoneOf = this.#zoneOf;
    zoneBest.fill(-1);
    for (let member = 0; member < zoneOf.length; member++) {
      const zone = zoneOf[member];
      const best = zoneBest[zone];
      if (best < 0) zoneBest[zone] = member;
      else if (this.#keyFloor(member) <= this.#keyOf(best) && this.#before(member, best)) {
        zoneBest[zone] = member;
      }
    }
  }

  /** Puts the best untaken members in `#chosen[start, end)` and marks them taken. */
  #chooseRest(start: number, end: number): void {
    if (start === end) return;
    const taken = this.#taken;
    let filled = 0;
    for (let member = 0; member < taken.length; member++) {
      if (taken[member] === 0) filled = this.#offer(member, start, filled, end - start);
    }
    assert(filled === end - start, "enough untaken members remain");
    for (let slot = start; slot < end; slot++) taken[this.#chosen[slot]] = 1;
  }

  /**
   * Inserts `member` into the sorted run `#chosen[start, start + filled)` that keeps the
   * `wanted` best members offered so far; returns the run's new length.
   */
  #offer(member: number, start: number, filled: number, wanted: number): number {
    const chosen = this.#chosen;
    if (filled === wanted) {
      const worst = chosen[start + filled - 1];
      if (this.#keyFloor(member) > this.#keyOf(worst) || !this.#before(member, worst)) {
        return filled;
      }
    } else {
      filled++;
    }
    // A full run drops its worst member; a run still filling grows by one.
    let slot = start + filled - 1;
    while (slot > start && this.#before(member, chosen[slot - 1])) {
      chosen[slot] = chosen[slot - 1];
      slot--;
    }
    chosen[slot] = member;
    return filled;
  }
}

/**
 * The `replicas` distinct members that hold `name`, most preferred first; see
 * {@linkcode Placement.replicas}. Builds a {@linkcode Placement} per call: on a hot path,
 * build one per membership change and reuse it.
 *
 * @example
 * ```ts
 * const members = [
 *   { id: "a", weight: 1, zone: null },
 *   { id: "b", weight: 1, zone: null },
 * ];
 * placeReplicas("volume/vm1", members, 1); // ["b"]
 * ```
 */
export function placeReplicas(
  name: string,
  members: readonly PlacementMember[],
  replicas: number,
): string[] {
  return new Placement(members).replicas(name, replicas);
}

function validateReplicaCount(replicas: number): void {
  if (typeof replicas !== "number") {
    throw new TypeError(`Cannot place replicas: count of type ${typeof replicas}`);
  }
  if (!Number.isInteger(replicas) || replicas < 1) {
    throw new RangeError(`Cannot place ${replicas} replicas: expected an integer ≥ 1`);
  }
}
