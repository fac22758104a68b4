/**
 * A deterministic discrete-event simulator of a cluster of {@linkcode Membership} nodes:
 * a virtual clock, one event queue, seeded randomness, and a network with loss, delay and
 * partitions. Nodes can be killed, paused (their timers then fire late, before the messages
 * that queued up meanwhile, as libuv runs a resumed process's timers before its I/O), made
 * to leave, restarted under the same id, and added at any time. Every membership change is
 * traced (time, observer, member, status, incarnation) and hashed: the same seed gives the
 * same trace, byte for byte, and a failing seed replays exactly.
 *
 * @example
 * ```ts
 * const sim = new Simulator({ seed: 7, lossRate: 0.01 });
 * sim.bootstrap(20);
 * sim.at(10_000, () => sim.kill(3));
 * sim.run(40_000);
 * console.log(sim.traceHash());
 * ```
 *
 * @module
 */

import { assert } from "../../core/assert.ts";
import { EventQueue, type QueuedEvent } from "./_event_queue.ts";
import { mix32, Random } from "./_sim_random.ts";
import {
  Membership,
  type MembershipConfig,
  type MembershipEnv,
  type MemberState,
  type Message,
  type TimerHandle,
} from "../membership/mod.ts";
import {
  datagramBytesMax,
  envelopeBytesReserve,
  type MemberStatus,
  parseMessage,
} from "../membership/mod.ts";

export { Random } from "./_sim_random.ts";

/** Network and cluster settings of a simulation. */
export interface SimulatorOptions {
  seed: number;
  /** Probability that a datagram is lost (each one independently). Default 0. */
  lossRate?: number;
  /** Network delay is uniform in [delayMinMs, delayMaxMs) (default 0.5–5 ms). */
  delayMinMs?: number;
  delayMaxMs?: number;
  /**
   * Streams are not lost at random but retransmitted: each loss (same rate as datagrams)
   * adds a retransmission timeout, starting at TCP's initial 1 s (RFC 6298) and doubling; a
   * stream that would take longer than `streamTimeoutMs` (memberlist's TCP timeout, 10 s)
   * is dropped.
   */
  streamTimeoutMs?: number;
  /** Datagrams a paused node's socket buffer holds (~208 KB of 1400-byte datagrams). */
  pausedInboxMax?: number;
  /** Membership tunables for every node. */
  config?: Partial<MembershipConfig>;
  /** JSON round-trip every message and check datagram sizes (slower; for tests). */
  checkMessages?: boolean;
}

/** One traced change: `observer` saw `member` become `status` at `incarnation`. */
export interface TraceEvent {
  timeMs: number;
  observer: number;
  member: number;
  status: MemberStatus;
  incarnation: number;
}

/** A simulated node. */
export interface SimNode {
  readonly index: number;
  readonly id: string;
  readonly address: string;
  /** Set when the node starts. */
  membership: Membership | null;
  /** Started, and neither killed nor made to leave. */
  readonly up: boolean;
  /** Killed (until restarted). */
  killed: boolean;
  /** The node runs nothing before this time. */
  pausedUntilMs: number;
}

const timerEvent = 0;
const deliveryEvent = 1;
const actionEvent = 2;

class SimEvent implements QueuedEvent, TimerHandle {
  time = 0;
  seq = 0;
  index = -1;
  cancelled = false;
  constructor(
    readonly queue: EventQueue<SimEvent>,
    readonly kind: number,
    readonly node: number,
    readonly fn: (() => void) | null,
    readonly from: string,
    readonly message: Message | null,
  ) {}
  cancel(): void {
    this.cancelled = true;
    this.queue.remove(this);
  }
}

interface NodeState extends SimNode {
  started: boolean;
  gone: boolean;
  zone: string | null;
  weight: number;
  restarts: number;
  stalled: SimEvent[];
  inbox: SimEvent[];
  group: number;
}

const statusCodes: Record<MemberStatus, number> = { alive: 1, suspect: 2, dead: 3, left: 4 };

/** See the module documentation. */
export class Simulator {
  readonly nodes: SimNode[] = [];
  /** Scenario randomness (victims, pause lengths), independent of the nodes' streams. */
  readonly random: Random;
  readonly #seed: number;
  readonly #queue = new EventQueue<SimEvent>();
  readonly #net: Random;
  readonly #options: Required<Omit<SimulatorOptions, "config">>;
  readonly #config: Partial<MembershipConfig>;
  readonly #byAddress = new Map<string, NodeState>();
  readonly #byId = new Map<string, number>();
  readonly #listeners: ((event: TraceEvent) => void)[] = [];
  #now = 0;
  #hashA = 0x811c9dc5;
  #hashB = 0x9747b28c;
  #traceEvents = 0;
  #messages = 0;
  #events = 0;

  constructor(options: SimulatorOptions) {
    this.#seed = options.seed;
    this.#options = {
      seed: options.seed,
      lossRate: options.lossRate ?? 0,
      delayMinMs: options.delayMinMs ?? 0.5,
      delayMaxMs: options.delayMaxMs ?? 5,
      streamTimeoutMs: options.streamTimeoutMs ?? 10_000,
      pausedInboxMax: options.pausedInboxMax ?? 150,
      checkMessages: options.checkMessages ?? false,
    };
    const o = this.#options;
    if (
      !(o.lossRate >= 0 && o.lossRate < 1) || !(o.delayMinMs >= 0 && o.delayMinMs <= o.delayMaxMs)
    ) {
      throw new RangeError(`Cannot simulate: bad network ${JSON.stringify(o)}`);
    }
    this.#config = options.config ?? {};
    this.random = new Random(options.seed, 0x5ce7a);
    this.#net = new Random(options.seed, 0x7e7);
  }

  /** Simulated time, in milliseconds. */
  get now(): number {
    return this.#now;
  }

  /** Counters: trace events, messages sent, events run. */
  get stats(): { traceEvents: number; messages: number; events: number } {
    return { traceEvents: this.#traceEvents, messages: this.#messages, events: this.#events };
  }

  /** Adds a node that starts at `atMs` (default now) and joins through `seeds` (indices). */
  addNode(
    options: { atMs?: number; seeds?: number[]; zone?: string | null; weight?: number } = {},
  ): SimNode {
    const index = this.nodes.length;
    const id = `n${String(index).padStart(4, "0")}`;
    const node: NodeState = {
      index,
      id,
      address: `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}:7946`,
      membership: null,
      get up() {
        return this.started && !this.killed && !this.gone;
      },
      killed: false,
      gone: false,
      pausedUntilMs: 0,
      started: false,
      stalled: [],
      inbox: [],
      group: 0,
      zone: options.zone ?? null,
      weight: options.weight ?? 1,
      restarts: 0,
    };
    this.nodes.push(node);
    this.#byAddress.set(node.address, node);
    this.#byId.set(id, index);
    this.at(options.atMs ?? this.#now, () => this.#start(node, options.seeds ?? []));
    return node;
  }

  /**
   * Starts node `index` again, now, as a fresh process with the same id and address (after
   * a kill or a leave), joining through `seeds`. It starts at incarnation 0 and must refute
   * whatever the cluster remembers of it.
   */
  restart(index: number, seeds: number[]): void {
    const node = this.#node(index);
    node.membership?.stop();
    node.killed = false;
    node.gone = false;
    node.pausedUntilMs = 0;
    node.stalled = [];
    node.inbox = [];
    node.restarts += 1;
    this.#start(node, seeds);
  }

  #start(node: NodeState, seeds: number[]): void {
    const { id, address, zone, weight } = node;
    const membership = new Membership({ id, address, zone, weight }, this.#env(node), this.#config);
    node.membership = membership;
    membership.onChange((state) => this.#record(node.index, state));
    node.started = true;
    membership.start(seeds.map((i) => this.nodes[i].address));
  }

  /**
   * Adds `count` nodes that start now already knowing each other, as if the cluster had
   * formed long ago: each gets the full state as the answer to a join, so nobody gossips it.
   */
  bootstrap(count: number): SimNode[] {
    const added: SimNode[] = [];
    for (let i = 0; i < count; i += 1) added.push(this.addNode());
    this.at(this.#now, () => {
      const members = added.map((n) => ({
        id: n.id,
        address: n.address,
        zone: null,
        weight: 1,
        incarnation: 0,
        status: "alive" as const,
      }));
      for (const node of added) {
        const source = added[0] === node ? added[1] ?? node : added[0];
        node.membership?.receive(source.address, {
          type: "push-pull",
          phase: "response",
          join: true,
          source: source.id,
          replyTo: source.address,
          members,
        });
      }
    });
    return added;
  }

  /** Runs `fn` at simulated time `timeMs` (not before now). */
  at(timeMs: number, fn: () => void): void {
    const event = new SimEvent(this.#queue, actionEvent, -1, fn, "", null);
    event.time = Math.max(timeMs, this.#now);
    this.#queue.push(event);
  }

  /** Kills node `index`: it never runs, sends or receives again (unless restarted). */
  kill(index: number): void {
    const node = this.#node(index);
    // Its timers never fire again; stopping its membership just takes them off the queue.
    node.membership?.stop();
    node.killed = true;
    node.stalled = [];
    node.inbox = [];
  }

  /** Makes node `index` leave gracefully; it no longer counts as up. */
  leave(index: number): void {
    const node = this.#node(index);
    node.membership?.leave();
    node.gone = true;
  }

  /**
   * Stops node `index` for `durationMs`: it runs nothing meanwhile; its due timers and the
   * datagrams (up to the socket buffer) and streams that reach it wait. On resume the timers
   * fire first, late, then the messages are read, as in a resumed process.
   */
  pause(index: number, durationMs: number): void {
    const node = this.#node(index);
    node.pausedUntilMs = Math.max(node.pausedUntilMs, this.#now + durationMs);
    this.at(node.pausedUntilMs, () => this.#resume(node));
  }

  /** Splits the network: nodes in different groups reach each other by no path. */
  partition(groups: number[][]): void {
    for (const node of this.nodes) (node as NodeState).group = -1;
    groups.forEach((group, g) => {
      for (const index of group) this.#node(index).group = g;
    });
  }

  /** Ends any partition. */
  heal(): void {
    for (const node of this.nodes) (node as NodeState).group = 0;
  }

  /** Calls `listener` on every traced change, as it happens. */
  onTrace(listener: (event: TraceEvent) => void): void {
    this.#listeners.push(listener);
  }

  /** Index of the node with member id `id`. */
  indexOf(id: string): number {
    const index = this.#byId.get(id);
    assert(index !== undefined, `unknown member ${id}`);
    return index;
  }

  /** Runs events up to and including time `untilMs`; the clock then reads `untilMs`. */
  run(untilMs: number): void {
    const queue = this.#queue;
    for (;;) {
      const event = queue.peek();
      if (event === undefined || event.time > untilMs) break;
      queue.pop();
      if (event.cancelled) continue;
      this.#now = event.time;
      this.#events += 1;
      this.#dispatch(event);
    }
    this.#now = Math.max(this.#now, untilMs);
  }

  /** Hash of the trace so far (64 bits, hex): equal traces give equal hashes. */
  traceHash(): string {
    const hex = (x: number) => (x >>> 0).toString(16).padStart(8, "0");
    return `${hex(this.#hashA)}${hex(this.#hashB)}-${this.#traceEvents}-${this.#seed}`;
  }

  #dispatch(event: SimEvent): void {
    if (event.kind === actionEvent) {
      event.fn!();
      return;
    }
    const node = this.nodes[event.node] as NodeState;
    if (node.killed) return;
    if (node.pausedUntilMs > this.#now) {
      if (event.kind === timerEvent) {
        node.stalled.push(event);
      } else if (event.fn !== null || node.inbox.length < this.#options.pausedInboxMax) {
        node.inbox.push(event);
      }
      return;
    }
    if (event.kind === timerEvent) {
      event.fn!();
    } else {
      node.membership?.receive(event.from, event.message!);
    }
  }

  #resume(node: NodeState): void {
    if (node.killed || node.pausedUntilMs > this.#now) return;
    const waiting = [...node.stalled, ...node.inbox];
    node.stalled = [];
    node.inbox = [];
    for (const event of waiting) {
      event.time = this.#now;
      this.#queue.push(event);
    }
  }

  #env(node: NodeState): MembershipEnv {
    const random = new Random(this.#seed, node.index + 1 + node.restarts * 65_536);
    return {
      now: () => this.#now,
      random: () => random.next(),
      schedule: (delayMs, fn) => {
        const event = new SimEvent(this.#queue, timerEvent, node.index, fn, "", null);
        event.time = this.#now + delayMs;
        this.#queue.push(event);
        return event;
      },
      send: (to, message) => this.#send(node, to, message, false),
      sendReliable: (to, message) => this.#send(node, to, message, true),
    };
  }

  #send(from: NodeState, to: string, message: Message, stream: boolean): void {
    assert(!from.killed && from.pausedUntilMs <= this.#now, "a stopped node cannot send");
    this.#messages += 1;
    if (this.#options.checkMessages) message = checked(message, stream);
    const target = this.#byAddress.get(to);
    if (target === undefined || target.group !== from.group) return;
    const o = this.#options;
    const net = this.#net;
    let delayMs = net.between(o.delayMinMs, o.delayMaxMs);
    if (stream) {
      // Retransmissions: each loss costs a timeout, doubling from TCP's initial 1 s.
      for (let rtoMs = 1_000; o.lossRate > 0 && net.next() < o.lossRate; rtoMs *= 2) {
        delayMs += rtoMs;
        if (delayMs > o.streamTimeoutMs) return;
      }
    } else if (o.lossRate > 0 && net.next() < o.lossRate) {
      return;
    }
    // A stream delivery carries a marker `fn` so a paused node's full buffer never drops it.
    const event = new SimEvent(
      this.#queue,
      deliveryEvent,
      target.index,
      stream ? streamMarker : null,
      from.address,
      message,
    );
    event.time = this.#now + delayMs;
    this.#queue.push(event);
  }

  #record(observer: number, state: MemberState): void {
    const member = this.#byId.get(state.id) ?? -1;
    const status = state.status;
    const timeUs = Math.round(this.#now * 1000);
    this.#hash(timeUs % 4294967296);
    this.#hash(Math.floor(timeUs / 4294967296));
    this.#hash(observer);
    this.#hash(member);
    this.#hash(statusCodes[status]);
    this.#hash(state.incarnation);
    this.#traceEvents += 1;
    if (this.#listeners.length === 0) return;
    const event: TraceEvent = {
      timeMs: this.#now,
      observer,
      member,
      status,
      incarnation: state.incarnation,
    };
    for (const listener of this.#listeners) listener(event);
  }

  #hash(word: number): void {
    this.#hashA = Math.imul(this.#hashA ^ word, 0x01000193) >>> 0;
    const b = Math.imul(this.#hashB ^ word, 0x5bd1e995);
    this.#hashB = (b ^ (b >>> 15)) >>> 0;
  }

  #node(index: number): NodeState {
    const node = this.nodes[index] as NodeState | undefined;
    assert(node !== undefined, `no node ${index}`);
    return node;
  }
}

function streamMarker(): void {}

/**
 * The message as the transport would carry it: JSON, valid for the receiver, and within a
 * datagram's size (the envelope's share left free).
 */
function checked(message: Message, stream: boolean): Message {
  const json = JSON.stringify(message);
  if (!stream) {
    assert(
      json.length + envelopeBytesReserve <= datagramBytesMax,
      `datagram of ${json.length} bytes: ${json.slice(0, 200)}`,
    );
  }
  const decoded = JSON.parse(json);
  assert(parseMessage(decoded) !== undefined, `invalid message sent: ${json.slice(0, 200)}`);
  return decoded;
}

/** A seed derived from `base` and `index`, for runs that need many distinct seeds. */
export function deriveSeed(base: number, index: number): number {
  return mix32(base ^ Math.imul(index + 1, 0x27d4eb2d));
}
