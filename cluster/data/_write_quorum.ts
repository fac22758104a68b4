/**
 * The write quorum of blocks and objects: how many of an item's replicas must
 * hold a write (a flush: hold it durably) before it is acknowledged.
 *
 * The rule is `max(minCopies, majority of the replicas not known dead)`, capped
 * by R, where `minCopies = R - floor(R/2)` (Ceph's default `min_size`: R = 2 → 1,
 * R = 3 → 2, R = 5 → 3). With every replica up, or with R = 3, that is the
 * plain majority; with R = 2 and one replica *dead* (gossip says so; a merely
 * suspect replica may be alive and is waited for), one durable copy acknowledges,
 * so R = 2 data keeps taking writes through a crash instead of stalling until
 * healing moves the data after the dead grace period.
 *
 * Why a single copy is enough to go on with: blocks are immutable and named by
 * their hash, so any copy is right; objects are written only by the holder of
 * the volume's write lease, storage refuses older epochs (leases.ts), and every
 * copy carries a stamp, so a replica that comes back behind is found and
 * replaced whole (by the writer's next write or flush, or by healing); a block
 * it missed comes back through its hint or healing.
 *
 * Residual risks, as with Ceph's `min_size 1`:
 * - if the only up-to-date copy dies before the stale replica was brought up
 *   to date, the stale copy is what remains, and a later writer continues from
 *   it: the writes it missed are lost. Ceph avoids that with peering logs (a PG
 *   knows which of its OSDs is behind and waits for a current one); here the
 *   stale copy cannot know it is stale.
 * - "dead" is this node's gossip view. A lease holder cut off from the others
 *   sees them dead too, and so keeps acknowledging writes on its own copy; if
 *   another node took the lease over meanwhile (higher epoch), those writes are
 *   discarded when the partition heals, where with a majority they would have
 *   failed.
 */
import { assert } from "../../core/assert.ts";

/** What the write quorum depends on: the replica count and how many are known dead. */
export interface WriteQuorumInput {
  /** Replicas of the item (R, or fewer while the cluster has fewer members). */
  replicas: number;
  /** Of those, how many gossip declares dead (not merely suspect). */
  dead: number;
}

/**
 * The copies a write must reach before it is acknowledged (see the module doc).
 *
 * @example
 * ```ts
 * writeQuorum({ replicas: 2, dead: 0 }); // 2
 * writeQuorum({ replicas: 2, dead: 1 }); // 1
 * writeQuorum({ replicas: 3, dead: 1 }); // 2
 * ```
 */
export function writeQuorum({ replicas, dead }: WriteQuorumInput): number {
  assert(Number.isSafeInteger(replicas) && replicas >= 1, `bad replica count ${replicas}`);
  assert(Number.isSafeInteger(dead) && dead >= 0 && dead <= replicas, `bad dead count ${dead}`);
  const minCopies = replicas - Math.floor(replicas / 2);
  const majorityOfLive = Math.floor((replicas - dead) / 2) + 1;
  const quorum = Math.min(replicas, Math.max(minCopies, majorityOfLive));
  assert(quorum >= 1 && quorum <= replicas && quorum >= minCopies);
  return quorum;
}

/** The write quorum of an item whose replicas have these ids. */
export function writeQuorumOf(ids: string[], isDead: (id: string) => boolean): number {
  // No replica at all (no member holds a place): one copy is still required, so
  // the caller, which reached none, fails instead of acknowledging nothing.
  if (ids.length === 0) return 1;
  return writeQuorum({ replicas: ids.length, dead: ids.filter((id) => isDead(id)).length });
}
