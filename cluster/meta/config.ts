/**
 * The metadata configuration: which members are the acceptors ("voters") of
 * every metadata register, and how it changes without losing a value.
 *
 * Every metadata key has the same acceptors: the voters of the configuration
 * (3 once the cluster has 3 members, 5 from 5). A join of a member that is not
 * made a voter changes nothing here, whatever data placement does. A change of
 * voters goes through a joint configuration, in which every round needs a
 * majority of the old voters and a majority of the new ones; every key is then
 * refreshed through joint quorums (so the new voters hold every value) before
 * the final configuration drops the old voters (Raft's joint consensus, applied
 * to CASPaxos registers as in Rystsov's paper).
 *
 * A configuration's epoch is the first part of every ballot, and acceptors
 * refuse messages of an epoch older than the newest configuration they know:
 * once a configuration is installed at a majority of the voters it replaced,
 * no proposer still using the older one can finish a round.
 */
import { assert } from "../../core/assert.ts";

/** A committed metadata configuration. */
export interface MetaConfig {
  /** Increases by one with every change; the first part of every ballot. */
  epoch: number;
  /** The cluster this configuration belongs to. */
  clusterId: string;
  /** Member ids whose acceptors hold every key (sorted). */
  voters: string[];
  /** While changing (joint): the voters being moved to; null when stable. */
  next: string[] | null;
}

/** The key of the register that holds the configuration itself. */
export const configKey = "cluster/config";
/** Voters of a cluster with at least this many members: five. */
export const fiveVotersMembersMin = 5;
/** Most voters a configuration may name (a bound on every message's config). */
export const votersMax = 9;
/** Bytes of a member id at most (ids are UUIDs; tests use short names). */
export const memberIdBytesMax = 64;

/** The groups of voters a round needs a majority of: one when stable, two when joint. */
export function quorumGroups(config: MetaConfig): string[][] {
  return config.next === null ? [config.voters] : [config.voters, config.next];
}

/** Every voter of `config`, each once. */
export function allVoters(config: MetaConfig): string[] {
  return [...new Set(quorumGroups(config).flat())].sort();
}

/** Smallest number of members that is more than half of `count`. */
export function majority(count: number): number {
  return Math.floor(count / 2) + 1;
}

/** True when the members in `granted` make a majority of every group of `config`. */
export function isQuorum(config: MetaConfig, granted: Set<string>): boolean {
  return quorumGroups(config).every((group) =>
    group.filter((id) => granted.has(id)).length >= majority(group.length)
  );
}

/** How many voters a cluster of `members` members should have. */
export function voterTarget(members: number): number {
  if (members >= fiveVotersMembersMin) return 5;
  if (members >= 3) return 3;
  return 1;
}

/** A member as the choice of voters sees it. */
export interface Candidate {
  id: string;
  zone: string | null;
  /** alive and suspect keep or get a vote; dead keeps one only within the grace period. */
  status: "alive" | "suspect" | "dead" | "left";
  /** True for a dead member still within the dead grace period. */
  withinGrace: boolean;
}

/**
 * The voters the cluster should have. Current voters keep their vote while
 * they are alive, suspect, or dead within the grace period (a restart or a
 * flap moves nothing); alive members fill the free places, new zones first,
 * then by id, so every node that sees the same members makes the same choice.
 * A voter that left, or is dead past the grace period, loses its vote to an
 * alive member, but keeps it when there is none to take its place and the
 * cluster would fall below three voters (it may come back, as a node stopped
 * for a rolling restart does; a smaller set would only survive fewer
 * failures). The count is always odd.
 */
export function desiredVoters(current: string[], members: Candidate[]): string[] {
  const byId = new Map(members.map((member) => [member.id, member]));
  const holds = (member: Candidate | undefined) =>
    member !== undefined &&
    (member.status === "alive" || member.status === "suspect" ||
      (member.status === "dead" && member.withinGrace));
  const placed = members.filter(holds);
  // Never fewer than three voters once there were three: see the doc above.
  const floor = Math.min(current.length, 3);
  const target = Math.min(Math.max(voterTarget(placed.length), floor), votersMax);
  // Keep live voters first, then voters that are suspect or dead within grace.
  const rank = (id: string) => byId.get(id)!.status === "alive" ? 0 : 1;
  const kept = current.filter((id) => holds(byId.get(id)))
    .sort((a, b) => rank(a) - rank(b) || compareIds(a, b))
    .slice(0, target);
  const zones = new Set(kept.map((id) => byId.get(id)!.zone));
  const candidates = members.filter((member) =>
    member.status === "alive" && !kept.includes(member.id)
  ).sort((a, b) => Number(zones.has(a.zone)) - Number(zones.has(b.zone)) || compareIds(a.id, b.id));
  const voters = [...kept];
  for (const candidate of candidates) {
    if (voters.length >= target) break;
    voters.push(candidate.id);
    zones.add(candidate.zone);
  }
  for (const id of current) {
    if (voters.length >= floor) break;
    const status = byId.get(id)?.status;
    if (!voters.includes(id) && (status === "dead" || status === "left")) voters.push(id);
  }
  // An even count survives no more failures than one less: the last (least live) goes.
  if (voters.length % 2 === 0) voters.pop();
  return voters.sort();
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The configuration a change from `config` to `voters` goes through first. */
export function jointConfig(config: MetaConfig, voters: string[]): MetaConfig {
  assert(config.next === null, "a joint configuration is changed only by finishing it");
  return { ...config, epoch: config.epoch + 1, next: [...voters].sort() };
}

/** The configuration that finishes a joint one. */
export function finalConfig(config: MetaConfig): MetaConfig {
  assert(config.next !== null, "only a joint configuration is finished");
  return { ...config, epoch: config.epoch + 1, voters: config.next, next: null };
}

/** True when both name the same voters (in order: they are sorted). */
export function sameVoters(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

/** Checks the shape of a configuration from outside; throws TypeError otherwise. */
export function parseConfig(value: unknown): MetaConfig {
  const config = value as MetaConfig;
  const ids = (list: unknown) =>
    Array.isArray(list) && list.length >= 1 && list.length <= votersMax &&
    list.every((id) => typeof id === "string" && id.length > 0 && id.length <= memberIdBytesMax);
  if (
    typeof config !== "object" || config === null || !Number.isSafeInteger(config.epoch) ||
    config.epoch < 1 || typeof config.clusterId !== "string" || config.clusterId.length > 64 ||
    !ids(config.voters) || !(config.next === null || ids(config.next))
  ) throw new TypeError("Cannot use metadata configuration: malformed");
  return {
    epoch: config.epoch,
    clusterId: config.clusterId,
    voters: [...config.voters].sort(),
    next: config.next === null ? null : [...config.next].sort(),
  };
}

/** The configuration as register bytes. */
export function encodeConfig(config: MetaConfig): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(config));
}

/** The configuration from register bytes. */
export function decodeConfig(bytes: Uint8Array): MetaConfig {
  return parseConfig(JSON.parse(new TextDecoder().decode(bytes)));
}
