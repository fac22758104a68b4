/**
 * CASPaxos (Rystsov, 2018): a replicated register per key, changed by a function
 * in one Paxos round (prepare, then accept) against a quorum of acceptors; no
 * log. Volume records, maps and leases change only through it, so two nodes can
 * never both win a compare-and-set.
 *
 * The acceptors of every key are the voters of the metadata configuration
 * (`config.ts`): a majority of them, or of both groups while a change of voters
 * is under way. A configuration's epoch is the first part of every ballot, and
 * an acceptor refuses a message of an older epoch than it knows, answering with
 * its configuration so the proposer catches up and retries.
 *
 * The acceptor side and the proposer side are separate; transport is a parameter
 * (`AcceptorLink`), so tests and the simulator run any number of acceptors in
 * process with faults.
 */
import { UnavailableError } from "../../core/errors.ts";
import type { MetaConfig } from "./config.ts";

/** A proposal number: configuration epoch first, then a counter, then the proposer's id. */
export interface Ballot {
  epoch: number;
  counter: number;
  node: string;
}

/** The register's value: `version` 0 with `value` null means absent. */
export interface Register {
  version: number;
  value: Uint8Array | null;
  /**
   * Id of the change that wrote it. A change whose accept reached only some
   * acceptors may be adopted by another proposer; its own retry then finds its
   * id here and stops, instead of applying the change twice.
   */
  change?: string;
}

/** What an acceptor keeps per key, durably. */
export interface AcceptorState {
  promised: Ballot | null;
  accepted: Ballot | null;
  register: Register;
}

/** Durable storage of acceptor states (the local engine's metadata in a node). */
export interface AcceptorStore {
  load(key: string): Promise<AcceptorState | null>;
  save(key: string, state: AcceptorState): Promise<void>;
}

/** Where a node keeps the newest metadata configuration it knows. */
export interface ConfigHolder {
  /** The newest committed configuration this node knows; null before it joined. */
  current(): MetaConfig | null;
  /** Makes `config` the known configuration, durably, when it is newer. */
  install(config: MetaConfig): Promise<void>;
  /** Optional: asks other members for a newer configuration (a round found no quorum). */
  refresh?(): Promise<void>;
}

/** An acceptor that knows a newer configuration than the message's. */
export interface StaleReply {
  ok: false;
  stale: MetaConfig;
}

/** The answer to a prepare: a promise with what was accepted, or a refusal. */
export type PrepareReply =
  | { ok: true; accepted: Ballot | null; register: Register }
  | { ok: false; promised: Ballot }
  | StaleReply;

/** The answer to an accept. */
export type AcceptReply = { ok: true } | { ok: false; promised: Ballot } | StaleReply;

/** What an acceptor last accepted, without any promise (a read's fast path). */
export type PeekReply = { ok: true; accepted: Ballot | null; register: Register } | StaleReply;

/** A way to reach one acceptor (in process, or over RPC). */
export interface AcceptorLink {
  prepare(key: string, ballot: Ballot, config: MetaConfig): Promise<PrepareReply>;
  accept(key: string, ballot: Ballot, register: Register, config: MetaConfig): Promise<AcceptReply>;
  /** Optional: links without it make every read a full round. */
  peek?(key: string, config: MetaConfig): Promise<PeekReply>;
}

/** Rounds a change may take before it gives up (contention or no quorum). */
export const changeAttemptsMax = 24;
/**
 * Upper bound of the random pause before the second attempt, doubled for each
 * later one: a round takes a few milliseconds on a LAN, so one or two rounds'
 * worth of pause separates contenders without idling.
 */
export const retryPauseMsMax = 10;

/** No quorum answered, or contention outlasted the attempts. */
export class NoQuorumError extends UnavailableError {
  override name = "NoQuorumError";
}

/** This node knows no metadata configuration: it has not joined a cluster yet. */
export class NotJoinedError extends UnavailableError {
  override name = "NotJoinedError";
}

/** Orders ballots: negative when a < b. Null is below every ballot. */
export function compareBallots(a: Ballot | null, b: Ballot | null): number {
  if (a === null || b === null) return (a === null ? 0 : 1) - (b === null ? 0 : 1);
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  if (a.counter !== b.counter) return a.counter - b.counter;
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0;
}

/** The register of a key never written. */
export const absent: Register = { version: 0, value: null };
