/**
 * SWIM's probe of one member, as memberlist runs it: a direct ping; if no ack within the
 * probe timeout, pings through helpers (ping-req, which answer with a nack when the target
 * stays silent: Lifeguard) and over a stream; the caller closes the probe at its deadline.
 * Also the helper's side of a ping-req.
 *
 * @module
 */

import type { MembershipConfig } from "./_membership_config.ts";
import type { Member } from "./_member_table.ts";
import type { DatagramMessage, PingMessage, Update } from "./messages.ts";
import type { TimerHandle } from "./membership.ts";

/** How to send a datagram message. */
export interface SendOptions {
  /** Over a stream rather than a datagram. */
  stream?: boolean;
  /** An update that goes first, whatever the queue holds. */
  first?: Update;
  /** Whether queued updates ride along (default true). */
  piggyback?: boolean;
}

/** One probe in flight. */
export interface Probe {
  readonly seq: number;
  readonly target: Member;
  /** Target's incarnation when the probe started: a refutation meanwhile wins. */
  readonly incarnation: number;
  readonly startedAt: number;
  acked: boolean;
  /** Helpers asked, and nacks they sent back (Lifeguard's measure of our own health). */
  helpers: number;
  nacks: number;
}

/** What the prober needs from its membership. */
export interface ProberHost {
  readonly config: MembershipConfig;
  readonly selfId: string;
  readonly selfAddress: string;
  now(): number;
  random(): number;
  after(delayMs: number, fn: () => void): TimerHandle;
  cancel(timer: TimerHandle): void;
  send(to: string, message: DatagramMessage, options?: SendOptions): void;
  /** Up to `count` random alive members other than this node and `target`. */
  helpers(count: number, target: Member): Member[];
  /** True when this node stalled after `time` (its probes since then prove nothing). */
  stalledSince(time: number): boolean;
}

interface Relay {
  requester: string;
  seq: number;
  timer: TimerHandle;
}

/** Probes in flight, and pings relayed for others, matched to acks by sequence number. */
export class Prober {
  readonly #host: ProberHost;
  readonly #probes = new Map<number, Probe>();
  readonly #relays = new Map<number, Relay>();
  #seq: number;

  constructor(host: ProberHost) {
    this.#host = host;
    // A random start, so acks meant for a previous run of this node do not match.
    this.#seq = Math.floor(host.random() * 2 ** 31);
  }

  /** Pings `target` (telling a suspect it is suspected: the buddy system). */
  start(target: Member): Probe {
    const host = this.#host;
    const probe: Probe = {
      seq: this.#nextSeq(),
      target,
      incarnation: target.incarnation,
      startedAt: host.now(),
      acked: false,
      helpers: 0,
      nacks: 0,
    };
    this.#probes.set(probe.seq, probe);
    const buddy: Update | undefined = target.status === "suspect"
      ? { kind: "suspect", id: target.id, incarnation: target.incarnation, from: host.selfId }
      : undefined;
    // Queued updates ride only on pings to members believed alive: a suspect is often dead,
    // and the burst of verification probes a death causes would use up their transmissions.
    host.send(target.address, this.#ping(probe, false), {
      first: buddy,
      piggyback: target.status === "alive",
    });
    host.after(host.config.probeTimeoutMs, () => this.#escalate(probe));
    return probe;
  }

  /** Stops matching acks to `probe`; its fields say how it went. */
  finish(probe: Probe): void {
    this.#probes.delete(probe.seq);
  }

  /** An ack arrived: it closes our probe, or is forwarded to whoever asked us to relay. */
  ack(seq: number): void {
    const probe = this.#probes.get(seq);
    if (probe !== undefined) {
      probe.acked = true;
      return;
    }
    const relay = this.#relays.get(seq);
    if (relay === undefined) return;
    this.#relays.delete(seq);
    this.#host.cancel(relay.timer);
    const source = this.#host.selfId;
    this.#host.send(relay.requester, { type: "ack", seq: relay.seq, source, updates: [] });
  }

  /** A helper could not reach the target either: it, at least, is reachable. */
  nack(seq: number): void {
    const probe = this.#probes.get(seq);
    if (probe !== undefined) probe.nacks += 1;
  }

  /** Pings `target` for `requester`; its ack is forwarded, or a nack sent after the timeout. */
  relay(requesterSeq: number, target: string, targetAddress: string, requester: string): void {
    const host = this.#host;
    const seq = this.#nextSeq();
    const timer = host.after(host.config.probeTimeoutMs, () => {
      if (this.#relays.get(seq)?.timer !== timer) return;
      this.#relays.delete(seq);
      host.send(requester, { type: "nack", seq: requesterSeq, source: host.selfId, updates: [] });
    });
    this.#relays.set(seq, { requester, seq: requesterSeq, timer });
    // No updates ride along: a target someone failed to reach is often dead.
    const ping: PingMessage = {
      type: "ping",
      seq,
      target,
      source: host.selfId,
      replyTo: host.selfAddress,
      stream: false,
      updates: [],
    };
    host.send(targetAddress, ping, { piggyback: false });
  }

  /** No direct ack within the probe timeout: ask helpers, and try a stream. */
  #escalate(probe: Probe): void {
    const host = this.#host;
    if (probe.acked || !this.#probes.has(probe.seq) || host.stalledSince(probe.startedAt)) return;
    const target = probe.target;
    const helpers = host.helpers(host.config.indirectProbes, target);
    probe.helpers = helpers.length;
    for (const helper of helpers) {
      host.send(helper.address, {
        type: "ping-req",
        seq: probe.seq,
        target: target.id,
        targetAddress: target.address,
        source: host.selfId,
        replyTo: host.selfAddress,
        updates: [],
      });
    }
    if (host.config.streamFallback) {
      host.send(target.address, this.#ping(probe, true), { stream: true, piggyback: false });
    }
  }

  #ping(probe: Probe, stream: boolean): PingMessage {
    const host = this.#host;
    return {
      type: "ping",
      seq: probe.seq,
      target: probe.target.id,
      source: host.selfId,
      replyTo: host.selfAddress,
      stream,
      updates: [],
    };
  }

  #nextSeq(): number {
    this.#seq = this.#seq >= 2 ** 52 ? 0 : this.#seq + 1;
    return this.#seq;
  }
}
