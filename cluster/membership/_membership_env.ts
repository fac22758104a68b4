/**
 * What membership takes from its environment (clock, randomness, timers, network), so
 * that a simulation can stand in for it, and what it reports of a member.
 *
 * @module
 */

import type { Member } from "./_member_table.ts";
import type { MemberInfo, MemberStatus, Message } from "./messages.ts";

/** A member as this node sees it; `since` is the time of its last status change. */
export interface MemberState extends MemberInfo {
  incarnation: number;
  status: MemberStatus;
  since: number;
}

/** A scheduled callback that can be called off. */
export interface TimerHandle {
  cancel(): void;
}

/** Everything outside the state machine: injected, so a simulation can stand in for it. */
export interface MembershipEnv {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Uniform in [0, 1); seeded in the simulator. */
  random(): number;
  schedule(delayMs: number, fn: () => void): TimerHandle;
  /** Unreliable datagram: may be lost, delayed or reordered. */
  send(to: string, message: Message): void;
  /** Stream (push-pull, join, fallback ping): may fail under partition, silently. */
  sendReliable(to: string, message: Message): void;
  /**
   * True for a dead or left member kept past `deadRetainMs` (the cluster keeps
   * those that may hold copies no one else has until they are declared lost);
   * none when not given.
   */
  keepGone?(id: string): boolean;
}

/** True when `state` still says what stateOf(`member`) would. */
export function isStateOf(member: Member, state: MemberState): boolean {
  return member.id === state.id && member.address === state.address &&
    member.zone === state.zone && member.weight === state.weight &&
    member.incarnation === state.incarnation && member.status === state.status &&
    member.since === state.since;
}

/** The state reported of `member` (a copy: listeners cannot change the table). */
export function stateOf(member: Member): MemberState {
  return {
    id: member.id,
    address: member.address,
    zone: member.zone,
    weight: member.weight,
    incarnation: member.incarnation,
    status: member.status,
    since: member.since,
  };
}
