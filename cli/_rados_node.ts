/** The RADOS side of `atoll serve --engine rados`: the engine on a Ceph pool and its leases. */
import type { GcPolicy, Store } from "../core/mod.ts";
import { RadosEngine, radosGcPolicy, RadosLeases } from "../rados/mod.ts";

/** Where the node keeps its data on Ceph, as the command line gives it. */
export interface RadosServeOptions {
  /** `--ceph-conf FILE`. */
  conf: string;
  /** `--pool NAME`. */
  pool: string;
  /** `--ceph-id NAME` (client.NAME); null: admin. */
  id: string | null;
  /** `--ceph-namespace NAME`: prefix of the RADOS namespaces (several installations per pool). */
  namespace: string;
  /** `--gc-min-age`: blocks stored more recently are never collected. */
  gcMinAgeMs: number;
  /** `--gc-settle`: the pause between a collection's two reads of the records. */
  gcSettleMs: number;
}

/** Connects to the pool; the leases fence the engine's writes by their epochs. */
export async function openRados(
  options: RadosServeOptions,
  selfId: string,
  store: () => Store,
): Promise<{ engine: RadosEngine; leases: RadosLeases; gcPolicy: GcPolicy }> {
  let leases: RadosLeases | null = null;
  const engine = await RadosEngine.open({
    conf: options.conf,
    pool: options.pool,
    id: options.id ?? undefined,
    namespace: options.namespace,
    fenceOf: (uid) => leases?.epochOf(uid) ?? null,
    onBlocklisted: () => leases?.noteBlocklisted(),
  });
  leases = new RadosLeases({ store, engine, selfId });
  const gcPolicy = radosGcPolicy(engine, {
    minAgeMs: options.gcMinAgeMs,
    settleMs: options.gcSettleMs,
  });
  return { engine, leases, gcPolicy };
}
