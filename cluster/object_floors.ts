/**
 * Object floors (cluster/data/object_floors.ts) kept in the cluster's
 * metadata: one CASPaxos register per volume, `floors/UID`, moved with every
 * other key when the voters change.
 */
import { decodeFloors, type Floor, mergeFloors, type ObjectFloors } from "./data/mod.ts";
import type { Proposer } from "./meta/mod.ts";

/** Floors over the metadata registers of `proposer` (a function: it is built after the objects). */
export function proposedFloors(proposer: () => Proposer): ObjectFloors {
  const key = (uid: string) => `floors/${uid}`;
  return {
    async of(uid: string): Promise<Map<string, Floor>> {
      return decodeFloors((await proposer().read(key(uid))).value);
    },
    async raise(uid: string, floors: Map<string, Floor>): Promise<void> {
      await proposer().change(key(uid), (current) => ({
        version: current.version + 1,
        value: mergeFloors(current.value, floors),
      }));
    },
  };
}
