/**
 * The cluster's series in a member's /metrics: membership, healing, leases and
 * object repairs, read from the engine, the healer and the lease manager.
 */
import type { ClusterEngine } from "../cluster/cluster_engine.ts";
import type { LeaseManager } from "../cluster/leases/mod.ts";
import type { Healer } from "../cluster/repair/mod.ts";

/** The cluster's series in /metrics. */
export function clusterGauges(engine: ClusterEngine, healer: Healer, leases: LeaseManager) {
  const { status } = healer;
  const series = (help: string, value: number) => ({ help, value });
  return {
    atoll_cluster_members_placed: series(
      "Members holding a place (alive, suspect, or dead within the grace period)",
      engine.placementMembers().length,
    ),
    atoll_cluster_members_live: series("Members alive or suspect", engine.liveMembers().length),
    atoll_heal_passes_total: series("Healing passes completed", status.passes),
    atoll_heal_walks_total: series(
      "Healing passes that walked every local item (after a change, or as anti-entropy)",
      status.walks,
    ),
    atoll_heal_under_replicated: series(
      "Items this node found short of copies in its last walk over every item",
      status.underReplicated,
    ),
    atoll_heal_blocks_copied_total: series(
      "Blocks copied to a replica by healing",
      status.blocksCopied,
    ),
    atoll_heal_blocks_handed_off_total: series(
      "Local block copies removed once every replica held them",
      status.blocksHandedOff,
    ),
    atoll_heal_objects_copied_total: series(
      "Objects copied to a replica by healing",
      status.objectsCopied,
    ),
    atoll_heal_hints_replayed_total: series(
      "Missed block puts replayed (hinted handoff)",
      status.hintsReplayed,
    ),
    atoll_heal_corrupt_blocks_repaired_total: series(
      "Corrupt local blocks found by scrub and replaced",
      status.corruptBlocksRepaired,
    ),
    atoll_heal_errors_total: series(
      "Healing copies that failed (retried next pass)",
      status.errors,
    ),
    atoll_cluster_block_fetches_total: series(
      "Blocks fetched from a replica",
      engine.blocks.counters.fetched,
    ),
    atoll_lease_acquired_total: series("Write leases taken by this node", leases.counters.acquired),
    atoll_lease_released_total: series(
      "Write leases this node gave up to another",
      leases.counters.released,
    ),
    atoll_lease_takeovers_total: series(
      "Leases taken from a holder that was dead or gone",
      leases.counters.takeovers,
    ),
    atoll_lease_fenced_writes_total: series(
      "Writes refused on connections open when this node lost a lease",
      leases.counters.fencedWrites,
    ),
    atoll_lease_forwarded_reads_total: series(
      "Reads this node forwarded to the lease holder of their volume",
      leases.counters.forwardedReads,
    ),
    atoll_lease_idle_reads_total: series(
      "Reads of volumes nobody holds served from a reader kept here, without a record read",
      leases.counters.idleReads,
    ),
    atoll_lease_last_move_ms: series(
      "Duration of the last lease move to this node",
      leases.counters.lastMoveMs,
    ),
    atoll_cluster_object_repairs_total: series(
      "Object replicas brought up to date by their writer",
      engine.objects.counters.repairs,
    ),
    atoll_cluster_remote_page_hits_total: series(
      "Reads of objects held only on other members served from this writer's pages",
      engine.objects.remotePages.hits,
    ),
    atoll_cluster_remote_page_misses_total: series(
      "Reads of objects held only on other members that went to a replica",
      engine.objects.remotePages.misses,
    ),
    atoll_cluster_remote_page_bytes: series(
      "Bytes of pages of objects held only on other members kept in memory",
      engine.objects.remotePages.bytes,
    ),
  };
}
