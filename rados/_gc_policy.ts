/**
 * Garbage collection with several nodes on one pool. A node does not know the
 * uploads in progress on the others, nor the map pages they stored for records
 * not written yet; those blocks are young. So a collection removes only blocks
 * stored (or stored again) longer than `minAgeMs` ago, checked in the same
 * RADOS operation as the removal (RadosEngine.deleteBlockStoredBefore), and
 * reads the records twice, `settleMs` apart, as the ring does. An upload keeps
 * its blocks young while it runs and right before its record is written
 * (`refresh`), so that one longer than `minAgeMs` loses none to a collection
 * elsewhere. Objects of a
 * volume's current generation are always kept (core/gc.ts), so objects copied
 * up by another node's unflushed writes are safe.
 */
import type { GcPolicy } from "../core/mod.ts";
import type { RadosEngine } from "./rados_engine.ts";

/** Blocks younger than this are never collected; also the clock skew nodes may have. */
export const gcMinAgeMsDefault = 10 * 60_000;
/** Pause between a collection's two reads of the records. */
export const gcSettleMsDefault = 2_000;
/** Blocks one refresh keeps young at once. */
const refreshesInFlightMax = 32;

/** The collection rules of a node on RADOS. */
export function radosGcPolicy(
  engine: RadosEngine,
  options: { minAgeMs?: number; settleMs?: number } = {},
): GcPolicy {
  const minAgeMs = options.minAgeMs ?? gcMinAgeMsDefault;
  return {
    minAgeMs,
    pinned: () => Promise.resolve(new Set<string>()),
    settle: () =>
      new Promise((resolve) => setTimeout(resolve, options.settleMs ?? gcSettleMsDefault)),
    deleteBlock: (hash) => engine.deleteBlockStoredBefore(hash, Date.now() - minAgeMs),
    deleteObject: (name) => engine.deleteObject(name),
    async refresh(hashes) {
      const queue = [...hashes];
      const gone: string[] = [];
      const worker = async () => {
        for (let hash = queue.pop(); hash !== undefined; hash = queue.pop()) {
          if (!(await engine.refreshBlock(hash))) gone.push(hash);
        }
      };
      await Promise.all(Array.from({ length: refreshesInFlightMax }, worker));
      return gone;
    },
  };
}
