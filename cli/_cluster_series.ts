/**
 * The cluster's series in a member's /metrics: membership, refused messages,
 * healing (backlog, copies, scrub), leases and object repairs, read at scrape
 * time from the parts that keep them (the gossip node, the healer, the lease
 * manager, the engine). Metadata rounds are timed where they run
 * (cluster/_engine_meta.ts).
 */
import type { ClusterEngine } from "../cluster/cluster_engine.ts";
import type { LeaseManager } from "../cluster/leases/mod.ts";
import type { Healer } from "../cluster/repair/mod.ts";
import type { AcceptorLog } from "../cluster/meta/mod.ts";
import type { JournalDisk } from "../cluster/data/mod.ts";
import { type ClusterNode, refusalReasons } from "../cluster/transport/mod.ts";
import { type Sample, type ScrapedSeries, scrapedSeries } from "../metrics/mod.ts";

const memberStates = ["alive", "suspect", "dead", "left"] as const;

/** The parts of a started member that keep the cluster's figures. */
export interface ClusterFigures {
  engine: ClusterEngine;
  node: ClusterNode;
  healer: Healer;
  leases: LeaseManager;
  acceptorLog: AcceptorLog;
  journal: JournalDisk;
}

/** Registers the cluster's series; the result removes them. */
export function registerClusterSeries(parts: ClusterFigures): () => void {
  const { engine, node, healer, leases, acceptorLog, journal } = parts;
  const { status } = healer;
  const counter = (name: string, help: string, read: ScrapedSeries["read"]): ScrapedSeries => ({
    name,
    help,
    type: "counter",
    read,
  });
  const gauge = (name: string, help: string, read: ScrapedSeries["read"]): ScrapedSeries => ({
    name,
    help,
    type: "gauge",
    read,
  });
  return scrapedSeries([
    {
      ...gauge(
        "atoll_cluster_members",
        "Members this node knows, by state",
        () => membersByState(node),
      ),
      labelNames: ["state"],
    },
    gauge(
      "atoll_cluster_members_placed",
      "Members holding a place (alive, suspect, or dead within the grace period)",
      () => engine.placementMembers().length,
    ),
    gauge(
      "atoll_cluster_members_live",
      "Members alive or suspect",
      () => engine.liveMembers().length,
    ),
    {
      ...counter(
        "atoll_cluster_messages_refused_total",
        "Cluster messages and links refused, by reason",
        () => refusalReasons.map((reason): Sample => [{ reason }, node.refusals.byReason[reason]]),
      ),
      labelNames: ["reason"],
    },
    gauge(
      "atoll_cluster_acceptor_keys",
      "Metadata keys this node's acceptor holds a state for",
      () => acceptorLog.size,
    ),
    gauge(
      "atoll_cluster_acceptor_log_bytes",
      "Bytes of this node's acceptor log (rewritten when it outgrows four times the live states)",
      () => acceptorLog.bytes,
    ),
    counter(
      "atoll_cluster_acceptor_log_syncs_total",
      "Syncs of the acceptor log (promises and accepts made together share one)",
      () => acceptorLog.syncs,
    ),
    counter(
      "atoll_cluster_acceptor_log_write_errors_total",
      "Writes to the acceptor log that failed (a full disk): their promises and accepts were refused",
      () => acceptorLog.writeErrors,
    ),
    gauge(
      "atoll_cluster_acceptor_log_failed",
      "1 once a sync of the acceptor log failed: the acceptor takes no more saves until a restart",
      () => acceptorLog.failure === null ? 0 : 1,
    ),
    counter(
      "atoll_cluster_journal_syncs_total",
      "Syncs of this node's object journal (a FLUSH waits for one; a sync started ahead of one is counted too)",
      () => journal.syncs.done,
    ),
    counter(
      "atoll_cluster_journal_syncs_ahead_total",
      "Syncs of the object journal started right after a write, because its writer flushed after the write before",
      () => journal.syncs.ahead,
    ),
    gauge(
      "atoll_cluster_journal_failed",
      "1 once a sync of the object journal failed: that journal's syncs fail from then on (the kernel may have dropped its pages)",
      () => journal.failure === null ? 0 : 1,
    ),
    counter("atoll_heal_passes_total", "Healing passes completed", () => status.passes),
    counter(
      "atoll_heal_walks_total",
      "Healing passes that walked every local item (after a change, or as anti-entropy)",
      () => status.walks,
    ),
    gauge(
      "atoll_heal_under_replicated",
      "Healing backlog: items this node found short of copies in its last walk over every item",
      () => status.underReplicated,
    ),
    counter(
      "atoll_heal_blocks_copied_total",
      "Blocks copied to a replica by healing",
      () => status.blocksCopied,
    ),
    counter(
      "atoll_heal_objects_copied_total",
      "Objects copied to a replica by healing",
      () => status.objectsCopied,
    ),
    counter(
      "atoll_heal_blocks_handed_off_total",
      "Local block copies removed once every replica held them",
      () => status.blocksHandedOff,
    ),
    counter(
      "atoll_heal_objects_handed_off_total",
      "Local object copies removed once every replica held them",
      () => status.objectsHandedOff,
    ),
    counter(
      "atoll_heal_hints_replayed_total",
      "Missed block puts replayed (hinted handoff)",
      () => status.hintsReplayed,
    ),
    counter(
      "atoll_heal_blocks_scrubbed_total",
      "Local blocks re-hashed by scrub",
      () => status.blocksScrubbed,
    ),
    counter(
      "atoll_heal_corrupt_blocks_repaired_total",
      "Corrupt local blocks found by scrub and replaced from a good replica",
      () => status.corruptBlocksRepaired,
    ),
    counter(
      "atoll_heal_errors_total",
      "Healing copies that failed (retried next pass)",
      () => status.errors,
    ),
    counter(
      "atoll_cluster_block_fetches_total",
      "Blocks fetched from a replica",
      () => engine.blocks.counters.fetched,
    ),
    counter(
      "atoll_lease_acquired_total",
      "Write leases this node took (lease moves here)",
      () => leases.counters.acquired,
    ),
    counter(
      "atoll_lease_released_total",
      "Write leases this node gave up to another",
      () => leases.counters.released,
    ),
    counter(
      "atoll_lease_takeovers_total",
      "Leases taken from a holder that was dead or gone",
      () => leases.counters.takeovers,
    ),
    counter(
      "atoll_lease_fenced_writes_total",
      "Writes refused on connections open when this node lost a lease",
      () => leases.counters.fencedWrites,
    ),
    counter(
      "atoll_lease_forwarded_reads_total",
      "Reads this node forwarded to the lease holder of their volume",
      () => leases.counters.forwardedReads,
    ),
    counter(
      "atoll_lease_idle_reads_total",
      "Reads of volumes nobody holds served from a reader kept here, without a record read",
      () => leases.counters.idleReads,
    ),
    counter(
      "atoll_lease_idle_releases_total",
      "Write leases this node gave up unused when another node read their volume",
      () => leases.counters.idleReleases,
    ),
    gauge(
      "atoll_lease_last_move_seconds",
      "Duration of the last lease move to this node (first write to holding the lease)",
      () => leases.counters.lastMoveMs / 1000,
    ),
    counter(
      "atoll_cluster_object_repairs_total",
      "Object replicas brought up to date by their writer",
      () => engine.objects.counters.repairs,
    ),
    counter(
      "atoll_cluster_object_held_reads_total",
      "Reads by this lease holder of objects it has not written, from the copy its first read found newest",
      () => engine.objects.counters.heldReads,
    ),
    counter(
      "atoll_cluster_remote_page_hits_total",
      "Reads of objects held only on other members served from this writer's pages",
      () => engine.objects.remotePages.hits,
    ),
    counter(
      "atoll_cluster_remote_page_misses_total",
      "Reads of objects held only on other members that went to a replica",
      () => engine.objects.remotePages.misses,
    ),
    counter(
      "atoll_cluster_remote_pages_ahead_total",
      "Pages of objects held only on other members fetched ahead of reads (the rest of an object a read missed)",
      () => engine.objects.remotePages.ahead,
    ),
    counter(
      "atoll_cluster_remote_page_slabs_total",
      "Slabs of 16 MiB a worker touched ahead for the pages of objects held only on other members",
      () => engine.objects.remotePages.slabs.touched,
    ),
    counter(
      "atoll_cluster_remote_page_slab_failures_total",
      "Touches of such slabs that failed (the worker died): those pages are made on the event loop",
      () => engine.objects.remotePages.slabs.failed,
    ),
    counter(
      "atoll_cluster_early_flushes_total",
      "Flushes this writer started as a write ended, ahead of a client that flushes after its writes",
      () => engine.objects.earlyFlushes,
    ),
    gauge(
      "atoll_cluster_remote_page_bytes",
      "Bytes of pages of objects held only on other members kept in memory",
      () => engine.objects.remotePages.bytes,
    ),
  ]);
}

function membersByState(node: ClusterNode): Sample[] {
  const counts = new Map<string, number>(memberStates.map((state) => [state, 0]));
  for (const member of node.members()) {
    counts.set(member.status, (counts.get(member.status) ?? 0) + 1);
  }
  return [...counts].map(([state, count]) => [{ state }, count]);
}
