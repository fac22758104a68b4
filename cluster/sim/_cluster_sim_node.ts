/**
 * A member of the whole-cluster simulation: its durable state (the memory
 * disk's platter, its acceptor states, its node configuration) and, while it
 * runs, the production processes built on them (ClusterEngine, Store with the
 * cluster's garbage collection rules, LeaseManager, Healer) with the simulated
 * clock, randomness and network. Requests between members go through
 * `SimWorld.call` (loss, partitions, pauses, crashes apply) as encoded RPC
 * messages, so no object is shared between nodes. Every timer of a member
 * (reconfiguration, healing) sleeps on its incarnation, so a crash stops them
 * all, as `kill -9` would.
 *
 * @module
 */
import { type Clock, Store } from "../../core/mod.ts";
import { ClusterEngine } from "../cluster_engine.ts";
import type { MemberState } from "../membership/mod.ts";
import {
  type AcceptorIndex,
  type AcceptorState,
  NodeConfig,
  type NodeConfigState,
} from "../meta/mod.ts";
import { LeaseManager } from "../leases/mod.ts";
import { clusterGcPolicy, gcMethods, Healer } from "../repair/mod.ts";
import {
  joinedData,
  type OutgoingMessage,
  type RpcCaller,
  RpcError,
  type RpcMessage,
  type RpcMethod,
} from "../transport/mod.ts";
import { MemoryDisk, MemoryPlatter } from "./_memory_disk.ts";
import { copyAcceptorState } from "./_sim_node.ts";
import { SimHashPool } from "./_sim_hash_pool.ts";
import { simCallTimeoutMs, type SimWorld } from "./_sim_net.ts";

/** Block size of the simulated volumes: small, so copy-ups and spans are many. */
export const simBlockSize = 16 * 1024;
/** How long a taker waits for an unreachable holder to be declared dead. */
const simTakeoverWaitMs = 8_000;
/** A dead member keeps its place this long before its data moves (`--dead-grace`). */
export const simClusterDeadGraceMs = 6_000;
/** Pause between two reconfiguration ticks of a member. */
const reconfigureEveryMs = 1000;
/** Pause between two healing passes of a member (`--heal-interval`; 5 s in production). */
const simHealIntervalMs = 2_000;
/**
 * Garbage collection's `--gc-min-age` and `--gc-settle`, a tenth of production's
 * as the dead grace is: collections then delete during the faults, not only after.
 */
export const simGcMinAgeMs = 6_000;
const simGcSettleMs = 1_000;

/** Small, so that a schedule's writes checkpoint replicas' journals too, not only replay them. */
const simJournalCheckpointBytes = 48 * 1024;
/** Writes of 2 sectors and more go in place, smaller ones into the journal: both paths run. */
const simJournalInPlaceBytes = 8 * 1024;

/** Calls worth a line of the trace (the rest are too many). */
const tracedMethods = new Set(["lease.release", "volume.read", "object.fence"]);
/** Uploads hash their blocks on the calling thread, at once (`_sim_hash_pool.ts`). */
const hashPool = new SimHashPool();

/** What the simulation gives a member: the world, views, and hooks for the checker. */
export interface ClusterSimHost {
  readonly world: SimWorld;
  /** Replicas of each block and object (2 or 3). */
  readonly replicas: number;
  /** Members run healing passes. */
  readonly healing: boolean;
  /** Members give up leases nobody uses there when read elsewhere (`ClusterSimOptions.idleRelease`). */
  readonly idleRelease: boolean;
  /** A replica journal's sync takes simulated time (`ClusterSimOptions.slowSyncs`). */
  readonly slowSyncs: boolean;
  /** Object calls naming this text (an object name or its start) get a trace line each. */
  readonly tracedObjects: string | null;
  /** The members as `viewer` sees them now (gossip with lag). */
  view(viewer: string): MemberState[];
  /** The running processes of member `id`; null when down. */
  runtimeOf(id: string): ClusterRuntime | null;
  /** Member `writer` writes an object of volume `uid` under `epoch`. */
  noteEpoch(uid: string, epoch: number, writer: string): void;
  note(line: string): void;
}

/** A member's durable state and, while it runs, its processes. */
export interface ClusterSimNode {
  id: string;
  incarnation: number;
  platter: MemoryPlatter;
  acceptorStates: Map<string, AcceptorState>;
  config: NodeConfigState;
  runtime: ClusterRuntime | null;
}

/** The processes of one incarnation of a member. */
export interface ClusterRuntime {
  incarnation: number;
  disk: MemoryDisk;
  engine: ClusterEngine;
  store: Store;
  leases: LeaseManager;
  healer: Healer;
  methods: Record<string, RpcMethod>;
}

/**
 * A new member; `voters` names the metadata voters it starts with, null for a
 * member that joins a running cluster (it learns the configuration from one).
 */
export function newClusterSimNode(
  id: string,
  clusterId: string,
  voters: string[] | null,
): ClusterSimNode {
  return {
    id,
    incarnation: 0,
    platter: new MemoryPlatter(),
    acceptorStates: new Map(),
    config: {
      clusterId,
      config: voters === null ? null : { epoch: 1, clusterId, voters, next: null },
    },
    runtime: null,
  };
}

/** Builds the processes of `node` for a new incarnation; starts its reconfiguration and healing. */
export function startClusterRuntime(host: ClusterSimHost, node: ClusterSimNode): ClusterRuntime {
  const world = host.world;
  const incarnation = ++node.incarnation;
  world.setIncarnation(node.id, incarnation);
  const clock: Clock = {
    now: () => world.now(),
    // An aborted timer never fires (the simulation has nothing to release).
    sleep: (ms, signal) =>
      world.sleep(node.id, incarnation, ms).then(() =>
        signal?.aborted ? new Promise<void>(() => {}) : undefined
      ),
  };
  const random = () => world.random.next();
  // A sync of 1-3 ms, as an fdatasync: changes land while it runs (off: earlier seeds unchanged).
  const syncDelay = host.slowSyncs ? () => clock.sleep(1 + Math.floor(random() * 3)) : undefined;
  const disk = new MemoryDisk({ platter: node.platter, now: clock.now, syncDelay });
  const nodeConfig = new NodeConfig(structuredClone(node.config), {
    save: (state) => Promise.resolve(void (node.config = structuredClone(state))),
  });
  const rpc = simRpc(host, node.id, incarnation);
  const writer = `${node.id}#${incarnation}`;
  const engine = new ClusterEngine({
    selfId: node.id,
    local: disk,
    journal: disk,
    journalCheckpointBytes: simJournalCheckpointBytes,
    journalInPlaceBytes: simJournalInPlaceBytes,
    acceptorStates: memoryAcceptorStates(node.acceptorStates),
    rpc,
    members: () => host.view(node.id),
    now: clock.now,
    nodeConfig,
    replicas: host.replicas,
    deadGraceMs: simClusterDeadGraceMs,
    log: (line) => host.note(`${node.id} ${line}`),
    epochOf: (uid) => {
      const epoch = leases.epochOf(uid);
      if (epoch > 0) host.noteEpoch(uid, epoch, writer);
      return epoch;
    },
    trustsWriter: (uid) => leases.trustsWriter(uid),
    clock,
    random,
  });
  const leases: LeaseManager = new LeaseManager({
    store: () => store,
    engine,
    rpc,
    takeoverWaitMs: simTakeoverWaitMs,
    // Below the time the simulation takes to see a member dead (cluster_sim.ts).
    leaseValidMs: 1_000,
    // Off: every member keeps the leases it took, as before the release came (the
    // schedules of earlier seeds stay as they were).
    idleReleaseMs: host.idleRelease ? undefined : Infinity,
    clock,
  });
  const store: Store = new Store({
    engine,
    pool: hashPool,
    blockSize: simBlockSize,
    // The workload collects where and when the store's timer would (`_cluster_sim_catalogue.ts`),
    // through the attempts it logs and checks; this timer never fires within a run.
    gcDelayMs: Number.MAX_SAFE_INTEGER / 4,
    access: leases.access,
    gcPolicy: clusterGcPolicy({
      engine,
      rpc,
      minAgeMs: simGcMinAgeMs,
      settleMs: simGcSettleMs,
      clock,
    }),
    clock,
    newUid: () => randomHex(random, 32),
  });
  const healer = new Healer({ engine, rpc, intervalMs: simHealIntervalMs, clock });
  const methods = { ...engine.methods(), ...leases.methods(), ...gcMethods(store, engine) };
  const runtime: ClusterRuntime = { incarnation, disk, engine, store, leases, healer, methods };
  node.runtime = runtime;
  if (host.healing) healer.start();
  const tick = async () => {
    await engine.reconfigurer.tick().catch(() => {});
    await clock.sleep(reconfigureEveryMs);
    tick();
  };
  clock.sleep(world.random.next() * reconfigureEveryMs).then(tick);
  return runtime;
}

/** Acceptor states in the member's durable map (saved at once, as the log's fdatasync). */
function memoryAcceptorStates(
  states: Map<string, AcceptorState>,
): AcceptorIndex & { close(): void } {
  return {
    keys: (prefix) => [...states.keys()].filter((key) => key.startsWith(prefix)).sort(),
    load: (key) => Promise.resolve(copyAcceptorState(states.get(key)) ?? null),
    save: (key, state) => Promise.resolve(void states.set(key, copyAcceptorState(state))),
    close: () => {},
  };
}

/**
 * A message as it crosses the simulated network: its header copied as JSON
 * would carry it, its data copied (what either side does with its objects
 * afterwards never reaches the other). The wire format itself is
 * link_wire.ts's, tested on its own; encoding every simulated message in it
 * cost a fifth of a soak's time, and a JSON text round trip an eighth.
 */
interface SimWire {
  header: Record<string, unknown>;
  data: Uint8Array;
}

function toWire(header: Record<string, unknown>, data: Uint8Array | undefined): SimWire {
  return {
    header: jsonCopy(header) as Record<string, unknown>,
    data: data === undefined || data.length === 0 ? new Uint8Array() : data.slice(),
  };
}

/** Each delivery its own copy (a duplicated message is delivered twice). */
function fromWire(wire: SimWire): RpcMessage {
  return { header: jsonCopy(wire.header) as Record<string, unknown>, data: wire.data };
}

/**
 * What `JSON.parse(JSON.stringify(value))` gives, for the plain objects, arrays
 * and scalars headers are made of, about three times as fast; anything else
 * (a class instance, an object with `toJSON`) takes the JSON round trip itself.
 */
export function jsonCopy(value: unknown): unknown {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number") return Number.isFinite(value) ? value + 0 : null;
    return value;
  }
  if (Array.isArray(value)) {
    const copy = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      copy[i] = item === undefined || typeof item === "function" || typeof item === "symbol"
        ? null
        : jsonCopy(item);
    }
    return copy;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype || "toJSON" in value) {
    return JSON.parse(JSON.stringify(value));
  }
  const copy: Record<string, unknown> = {};
  for (const key in value) {
    const item = (value as Record<string, unknown>)[key];
    if (item === undefined || typeof item === "function" || typeof item === "symbol") continue;
    copy[key] = jsonCopy(item);
  }
  return copy;
}

/**
 * RPC from incarnation `incarnation` of `from`: the request and the reply
 * cross the simulated network as copies (SimWire), and an error thrown by the
 * method comes back as the RpcError the real client throws (with its remote name).
 */
function simRpc(host: ClusterSimHost, from: string, incarnation: number): RpcCaller {
  return {
    call(
      address: string,
      method: string,
      message: OutgoingMessage = { header: {} },
      timeoutMs?: number,
    ) {
      const request = toWire({ ...message.header, method }, joinedData(message.data));
      const handle = async (): Promise<SimWire> => {
        const target = host.runtimeOf(address);
        if (target === null) throw new Error("down");
        const call = fromWire(request);
        try {
          const run = target.methods[method];
          if (run === undefined) throw new TypeError(`unknown method ${method}`);
          const reply = await run(call);
          return toWire({ ...reply.header, ok: true }, reply.data);
        } catch (error) {
          const { message, name } = error as Error;
          return toWire({ ok: false, error: message, name }, undefined);
        }
      };
      const tracedCall = host.tracedObjects !== null &&
        JSON.stringify(message.header).includes(host.tracedObjects);
      if (tracedCall) {
        host.note(`${from} calls ${method} at ${address} ${JSON.stringify(message.header)}`);
      }
      const waitMs = simCallTimeoutMs(host.world.callTimeoutMs, timeoutMs);
      return host.world.call(from, incarnation, address, handle, waitMs).then((wire) => {
        const reply = fromWire(wire);
        if (tracedMethods.has(method) || tracedCall) {
          host.note(
            `${from} ${method} at ${address} ${JSON.stringify(message.header)} -> ${
              JSON.stringify(reply.header)
            }`,
          );
        }
        if (reply.header.ok !== true) {
          throw new RpcError(`${method} on ${address} failed: ${reply.header.error}`, false, {
            remoteName: String(reply.header.name),
          });
        }
        return reply;
      }, (cause) => {
        if (tracedCall) host.note(`${from} ${method} at ${address} failed: ${cause.message}`);
        throw new RpcError(`Cannot call ${method} on ${address}: ${cause.message}`, true, {
          cause,
        });
      });
    },
  };
}

/** `digits` lowercase hex digits from the seeded randomness. */
export function randomHex(random: () => number, digits: number): string {
  let hex = "";
  for (let i = 0; i < digits; i++) hex += Math.floor(random() * 16).toString(16);
  return hex;
}
