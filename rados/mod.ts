/**
 * The RADOS engine: Atoll on a Ceph pool through librados (loaded on first
 * use, so nodes that do not select it run without librados), and the write
 * leases that let several nodes serve the same volumes on one pool.
 */
export { RadosEngine, type RadosEngineOptions } from "./rados_engine.ts";
export {
  fenceSettleMsDefault,
  type RadosLeaseCounters,
  RadosLeases,
  type RadosLeasesOptions,
  releaseTimeoutMsDefault,
} from "./rados_leases.ts";
export { gcMinAgeMsDefault, gcSettleMsDefault, radosGcPolicy } from "./_gc_policy.ts";
