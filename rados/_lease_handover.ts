/**
 * Handing a write lease on RADOS over between nodes: asking its holder to let
 * go (a notification on the watch object `lease.NAME` in the metadata
 * namespace), answering such asks as the holder (a watch on that object whose
 * callback lets go, then acknowledges), and fencing a holder that did not
 * answer in time: the cluster blocklists its client, so the OSDs refuse
 * everything it sends from then on (RBD's exclusive lock does the same), and
 * this node waits for every OSD to learn it.
 */
import type { VolumeLease } from "../core/mod.ts";
import type { RadosEngine } from "./rados_engine.ts";
import { WriteOp } from "./_ops.ts";
import { logger } from "../log/mod.ts";

const log = logger("leases");

/** Blocklist entries expire after this; a fenced client reconnects as a new one long before. */
const blocklistSeconds = 24 * 3600;

/** The lease as it is kept in the record on RADOS: the holder's client address too. */
export type RadosLease = VolumeLease & { client?: string };

/** Asks the holder of `name` to let go; returns once it did or `timeoutMs` is up. */
export async function askRelease(engine: RadosEngine, name: string, timeoutMs: number) {
  await engine.connection.notify(engine.metaContext, watchObject(name), timeoutMs);
}

/**
 * Fences the holder of `lease` on `name`, which did not let go: the cluster
 * blocklists its client, then this waits `settleMs` for the OSDs to learn
 * it. False when there is no client to fence (none recorded, or this node's).
 */
export async function fenceHolder(
  engine: RadosEngine,
  name: string,
  lease: RadosLease,
  settleMs: number,
): Promise<boolean> {
  if (lease.client === undefined || lease.client === engine.connection.address) return false;
  log.warn("fencing client {client} of node {holder}: it did not release volume {volume}", {
    client: lease.client,
    holder: lease.holder,
    volume: name,
  });
  await engine.connection.blocklist(lease.client, blocklistSeconds);
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  return true;
}

/**
 * Watches for asks to let go of `name` (this node took its lease): on each,
 * `letGo` runs with the watch's cookie, then the ask is acknowledged; a
 * failure is logged (the asking node fences this one once its time is up).
 * Returns the watch's cookie.
 */
export async function watchAsks(
  engine: RadosEngine,
  name: string,
  letGo: (cookie: bigint) => Promise<void>,
): Promise<bigint> {
  const io = engine.metaContext;
  await new WriteOp().create(false).operate(io, watchObject(name));
  return await engine.connection.watch(io, watchObject(name), (notifyId, cookie) => {
    (async () => {
      await letGo(cookie);
      await engine.connection.ack(io, watchObject(name), notifyId, cookie);
    })().catch((error) =>
      log.warn("could not let go of volume {volume} when asked: {error}", {
        volume: name,
        error: String(error),
      })
    );
  });
}

/** Stops the watch `cookie` (the lease was let go); a failure is ignored. */
export function unwatchAsks(engine: RadosEngine, cookie: bigint): void {
  engine.connection.unwatch(engine.metaContext, cookie).catch(() => {});
}

/** The object whose watchers hold the lease of volume `name` (metadata namespace). */
function watchObject(name: string): string {
  return `lease.${name}`;
}
