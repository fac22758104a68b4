/**
 * What the parts of a healing pass (_block_healing.ts, _object_healing.ts)
 * share of the healer that runs them (healer.ts).
 */
import type { ClusterEngine } from "../cluster_engine.ts";
import type { RpcCaller } from "../transport/mod.ts";
import type { HealerStatus } from "./healer.ts";

/** The healer's engine, calls and status, as one part of a pass sees them. */
export interface HealingContext {
  engine: ClusterEngine;
  rpc: RpcCaller;
  /** The healer's status, whose figures the part counts. */
  status: HealerStatus;
  /** Counts a failure in the status. */
  failed: (error: unknown) => void;
}
