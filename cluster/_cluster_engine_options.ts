/**
 * What a ClusterEngine is built from (cluster_engine.ts): its disk,
 * journal, acceptor states, calls to the members and the members as gossip
 * knows them, and what the simulation injects (clock, randomness).
 */
import type { Clock, NodeDisk } from "../core/mod.ts";
import type { AcceptorIndex, NodeConfig } from "./meta/mod.ts";
import type { JournalStore } from "./data/mod.ts";
import type { MemberState } from "./membership/mod.ts";
import type { RpcCaller } from "./transport/mod.ts";

/** Options of {@linkcode ClusterEngine}. */
export interface ClusterEngineOptions {
  selfId: string;
  /** This node's own disk (blocks and objects it holds as a replica). */
  local: NodeDisk;
  /** The journal of the objects it holds (journal_disk.ts beside the data; memory in a simulation). */
  journal: JournalStore;
  /** Journal bytes after which a checkpoint starts (the simulation makes it small). */
  journalCheckpointBytes?: number;
  /** Object changes at least this large are written in place (the simulation makes it small). */
  journalInPlaceBytes?: number;
  /**
   * This node's acceptor states, durable when `save()` resolves (an AcceptorLog
   * beside the data; the simulation keeps them in memory).
   */
  acceptorStates: AcceptorIndex & { close(): void };
  rpc: RpcCaller;
  /** The members as gossip knows them, this node included. */
  members: () => MemberState[];
  /** The clock of `members()`'s `since`. */
  now: () => number;
  /** The node's cluster id and metadata configuration. */
  nodeConfig: NodeConfig;
  replicas?: number;
  deadGraceMs?: number;
  /** Where the reconfiguration says what it does. */
  log?: (line: string) => void;
  /**
   * The epoch this node writes a volume's objects under (its write lease); 0
   * refuses the write. Without leases (tests of the engine alone), 1.
   */
  epochOf?: (uid: string) => number;
  /** See ReplicatedObjectsOptions.trustsWriter; always true without leases. */
  trustsWriter?: (uid: string) => boolean;
  /** See ReplicatedObjectsOptions.remotePagesBytes. */
  remotePagesBytes?: number;
  /** See ReplicatedObjectsOptions.touchMemory. */
  touchMemory?: (buffer: SharedArrayBuffer) => Promise<void>;
  /** The clock of the proposer's backoff and of block reads' last look; the system's unless told. */
  clock?: Clock;
  /** Randomness of the proposer's backoff and name; the system's unless told (a simulation). */
  random?: () => number;
}
