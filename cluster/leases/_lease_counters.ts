/** What the leases of one node did, as an operator sees it in /metrics and /v1/cluster. */

/** Counters an operator sees in /metrics and /v1/cluster. */
export interface LeaseCounters {
  acquired: number;
  released: number;
  takeovers: number;
  fencedWrites: number;
  forwardedReads: number;
  /** Reads of volumes nobody holds, served from a reader kept here (_idle_readers.ts). */
  idleReads: number;
  /** Leases given up unused when another node read their volume (_idle_release.ts). */
  idleReleases: number;
  /** Last lease move here, milliseconds from the first write to holding it. */
  lastMoveMs: number;
}

/** Counters at zero. */
export function newLeaseCounters(): LeaseCounters {
  return {
    acquired: 0,
    released: 0,
    takeovers: 0,
    fencedWrites: 0,
    forwardedReads: 0,
    idleReads: 0,
    idleReleases: 0,
    lastMoveMs: 0,
  };
}
