/**
 * Floors: what an object's copies must reach to be taken for the latest.
 *
 * A read trusts the newest of R - floor(R/2) answers because every flush was
 * acknowledged only once a write quorum held it, and the two overlap. With one
 * replica dead the write quorum drops (R = 2: one copy, as Ceph's min_size 1),
 * and the overlap is gone: if the one durable copy then dies too, the other
 * replica, back from the dead and behind, would answer alone and pass for the
 * latest (a new lease holder would even write on top of it). The overlap holds
 * only within one placement as well: a replica left behind may form a read
 * quorum of a later placement with members it healed (needsFloor). Ceph avoids
 * it with peering logs; here the writer records, in the cluster's metadata and
 * before it acknowledges a flush that left a replica behind, the stamp the
 * flushed copies hold (the object's floor). Whoever learns an object from
 * fewer than all its replicas checks the floor: an answer below it is stale,
 * and the object is unavailable (the read or write fails and can be retried)
 * until a copy that holds it answers, instead of serving or extending what a
 * flush superseded.
 */
import { compareStamps, type Stamp } from "./object_link.ts";

/**
 * An object's floor: the stamp, and the members a flush found holding it
 * durably when it raised the floor (none known for floors kept before they
 * were recorded). Once every one of them is declared lost (an operator gave
 * their disks up, cluster/lost_members.ts), no copy at the floor is left to
 * wait for, and the floor no longer binds (_floor_cache.ts).
 */
export interface Floor {
  stamp: Stamp;
  holders: string[];
}

/** Where floors are kept: one metadata record per volume (cluster/object_floors.ts). */
export interface ObjectFloors {
  /** The floors of volume `uid`'s objects, by object name. */
  of(uid: string): Promise<Map<string, Floor>>;
  /** Raises floors durably (never lowers one); resolves once a metadata quorum holds them. */
  raise(uid: string, floors: Map<string, Floor>): Promise<void>;
}

/** No floors: every flush reached a write quorum that overlaps every read (tests). */
export const noFloors: ObjectFloors = {
  of: () => Promise.resolve(new Map()),
  raise: () => Promise.resolve(),
};

/**
 * True when a flush durable on `copies` of R = `replicas` leaves some replica
 * behind. Not only when a read of the others could miss every durable copy
 * (copies + R - floor(R/2) <= R): the placement changes, and the replicas of a
 * later placement may be the one behind and a member healing copied its
 * version to, while the durable copies are away (seed 10092469 with joins,
 * leaves and replacements: a flush durable on two of three, the third cut off;
 * one of the two left, the other died for good, healing copied the third's
 * older copy to the member that joined in its place, and the two agreed on it
 * for a read). With the floor, whoever takes a copy below it looks on, and the
 * object is unavailable until a copy at the floor answers.
 */
export function needsFloor(copies: number, replicas: number): boolean {
  return copies < replicas;
}

/** The higher of two stamps. */
export function maxStamp(a: Stamp, b: Stamp): Stamp {
  return compareStamps(a, b) >= 0 ? a : b;
}

/** The higher of two floors; of two at the same stamp, one with the holders of both. */
export function maxFloor(a: Floor | undefined, b: Floor): Floor {
  if (a === undefined) return b;
  const order = compareStamps(a.stamp, b.stamp);
  if (order !== 0) return order > 0 ? a : b;
  return { stamp: a.stamp, holders: [...new Set([...a.holders, ...b.holders])].sort() };
}

/**
 * Floors encoded in a metadata value, merged with `raised` (maxFloor). JSON:
 * object name → [epoch, version, ...holder ids].
 */
export function mergeFloors(value: Uint8Array | null, raised: Map<string, Floor>): Uint8Array {
  const floors = decodeFloors(value);
  for (const [name, floor] of raised) floors.set(name, maxFloor(floors.get(name), floor));
  const saved = Object.fromEntries(
    [...floors].map(([name, { stamp, holders }]) => [name, [...stamp, ...holders]]),
  );
  return new TextEncoder().encode(JSON.stringify(saved));
}

/** Floors from a metadata value (none when null); a bare stamp is a floor of unknown holders. */
export function decodeFloors(value: Uint8Array | null): Map<string, Floor> {
  if (value === null) return new Map();
  const saved = JSON.parse(new TextDecoder().decode(value)) as Record<
    string,
    [number, number, ...string[]]
  >;
  return new Map(
    Object.entries(saved).map((
      [name, [epoch, version, ...holders]],
    ) => [name, { stamp: [epoch, version], holders }]),
  );
}
