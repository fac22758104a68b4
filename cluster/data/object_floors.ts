/**
 * Floors: what an object's copies must reach to be taken for the latest.
 *
 * A read trusts the newest of R - floor(R/2) answers because every flush was
 * acknowledged only once a write quorum held it, and the two overlap. With one
 * replica dead the write quorum drops (R = 2: one copy, as Ceph's min_size 1),
 * and the overlap is gone: if the one durable copy then dies too, the other
 * replica, back from the dead and behind, would answer alone and pass for the
 * latest (a new lease holder would even write on top of it). Ceph avoids it
 * with peering logs; here the writer records, in the cluster's metadata and
 * before it acknowledges such a flush, the stamp the flushed copies hold (the
 * object's floor). Whoever learns an object from fewer than all its replicas
 * checks the floor: an answer below it is stale, and the object is unavailable
 * (the read or write fails and can be retried) until a copy that holds it
 * answers, instead of serving or extending what a flush superseded.
 */
import { compareStamps, type Stamp } from "./object_link.ts";

/** Where floors are kept: one metadata record per volume (cluster/object_floors.ts). */
export interface ObjectFloors {
  /** The floors of volume `uid`'s objects, by object name. */
  of(uid: string): Promise<Map<string, Stamp>>;
  /** Raises floors durably (never lowers one); resolves once a metadata quorum holds them. */
  raise(uid: string, floors: Map<string, Stamp>): Promise<void>;
}

/** No floors: every flush reached a write quorum that overlaps every read (tests). */
export const noFloors: ObjectFloors = {
  of: () => Promise.resolve(new Map()),
  raise: () => Promise.resolve(),
};

/** True when `copies` durable copies of R = `replicas` may be missed by a read of the others. */
export function needsFloor(copies: number, replicas: number): boolean {
  const readAnswers = replicas - Math.floor(replicas / 2);
  return copies + readAnswers <= replicas;
}

/** The higher of two stamps. */
export function maxStamp(a: Stamp, b: Stamp): Stamp {
  return compareStamps(a, b) >= 0 ? a : b;
}

/** Floors encoded in a metadata value (JSON: name → stamp), merged with `raised` by maximum. */
export function mergeFloors(value: Uint8Array | null, raised: Map<string, Stamp>): Uint8Array {
  const floors = decodeFloors(value);
  for (const [name, stamp] of raised) {
    floors.set(name, maxStamp(floors.get(name) ?? [0, 0], stamp));
  }
  return new TextEncoder().encode(JSON.stringify(Object.fromEntries(floors)));
}

/** Floors from a metadata value (none when null). */
export function decodeFloors(value: Uint8Array | null): Map<string, Stamp> {
  if (value === null) return new Map();
  const saved = JSON.parse(new TextDecoder().decode(value)) as Record<string, Stamp>;
  return new Map(Object.entries(saved));
}
