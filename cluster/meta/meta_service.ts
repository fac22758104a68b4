/**
 * Metadata across the cluster: the CASPaxos acceptor of each node keeps its
 * states in an acceptor log (`acceptor_log.ts`), and peers reach it over sealed
 * RPC (`px.prepare`, `px.accept`, `px.peek`, `px.list`), each message carrying
 * the sender's configuration. `meta.config` tells a node's configuration and
 * `meta.install` makes a newer one known, durably (a change of voters uses it).
 */
import { isMetaKey } from "../../core/mod.ts";
import type { Acceptor } from "./acceptor.ts";
import {
  type AcceptorLink,
  type AcceptorState,
  type AcceptorStore,
  type Ballot,
  type ConfigHolder,
  type Register,
} from "./caspaxos.ts";
import { type MetaConfig, parseConfig } from "./config.ts";
import { decodeMessage, encodeMessage } from "../transport/mod.ts";
import type { RpcCaller, RpcMessage, RpcMethod } from "../transport/mod.ts";

/** Acceptor states that can also say which keys they hold. */
export interface AcceptorIndex extends AcceptorStore {
  /** Keys with a state, under `prefix` (which names a kind, e.g. `volume/`). */
  keys(prefix: string): string[];
}

/**
 * Keys under `prefix` (which names a kind, e.g. `volume/`) whose register this
 * node's acceptor holds with a value. A lagging acceptor may still hold a key
 * since deleted: callers read each key through a quorum before trusting it.
 */
export async function acceptedKeys(index: AcceptorIndex, prefix: string): Promise<string[]> {
  if (prefix.indexOf("/") <= 0 || prefix.length > 300) {
    throw new TypeError(`bad metadata prefix ${JSON.stringify(prefix)}`);
  }
  const keys: string[] = [];
  for (const key of index.keys(prefix)) {
    if ((await index.load(key))?.register.value != null) keys.push(key);
  }
  return keys;
}

/** The RPC methods that expose `acceptor` (over `index`) and `configs` to peers. */
export function acceptorMethods(
  acceptor: Acceptor,
  index: AcceptorIndex,
  configs: ConfigHolder,
): Record<string, RpcMethod> {
  return {
    "px.list": async (request) => {
      // `all`: every key with a state, deleted ones too (a change of voters moves them all).
      if (request.header.all === true) return { header: { keys: index.keys("") } };
      const keys = await acceptedKeys(index, String(request.header.prefix));
      // The configuration it knows: a lister on an older one learns of the voters since.
      return { header: { keys, config: configs.current() } };
    },
    "px.prepare": async (request) => {
      const reply = await acceptor.prepare(
        keyOf(request),
        ballotOf(request.header.ballot),
        parseConfig(request.header.config),
      );
      return reply.ok ? acceptedMessage(reply) : { header: refusal(reply) };
    },
    "px.peek": async (request) => {
      const reply = await acceptor.peek(keyOf(request), parseConfig(request.header.config));
      return reply.ok ? acceptedMessage(reply) : { header: refusal(reply) };
    },
    "px.accept": async (request) => {
      const reply = await acceptor.accept(
        keyOf(request),
        ballotOf(request.header.ballot),
        registerOf(request),
        parseConfig(request.header.config),
      );
      return { header: reply.ok ? { granted: true } : refusal(reply) };
    },
    "meta.config": () => ({ header: { config: configs.current() } }),
    "meta.install": async (request) => {
      const config = parseConfig(request.header.config);
      const known = configs.current();
      if (known !== null && known.clusterId !== config.clusterId) {
        throw new TypeError("Cannot install a configuration of another cluster");
      }
      await configs.install(config);
      return { header: { config: configs.current() } };
    },
  };
}

/** An AcceptorLink to the acceptor of the node at `address`. */
export function rpcAcceptorLink(rpc: RpcCaller, address: string): AcceptorLink {
  return {
    async prepare(key, ballot, config) {
      const reply = await rpc.call(address, "px.prepare", { header: { key, ballot, config } });
      if (reply.header.granted !== true) return refused(reply);
      return {
        ok: true,
        accepted: reply.header.accepted === null ? null : ballotOf(reply.header.accepted),
        register: registerOf(reply),
      };
    },
    async peek(key, config) {
      const reply = await rpc.call(address, "px.peek", { header: { key, config } });
      if (reply.header.granted !== true) return refused(reply) as { ok: false; stale: MetaConfig };
      return {
        ok: true,
        accepted: reply.header.accepted === null ? null : ballotOf(reply.header.accepted),
        register: registerOf(reply),
      };
    },
    async accept(key, ballot, register, config) {
      const reply = await rpc.call(address, "px.accept", {
        header: { key, ballot, config, ...registerHeader(register) },
        data: register.value ?? undefined,
      });
      return reply.header.granted === true ? { ok: true } : refused(reply);
    },
  };
}

/** Asks the node at `address` for its configuration (null: it knows none). */
export async function fetchConfig(rpc: RpcCaller, address: string): Promise<MetaConfig | null> {
  const reply = await rpc.call(address, "meta.config", { header: {} }, 2000);
  return reply.header.config === null ? null : parseConfig(reply.header.config);
}

/** Makes the node at `address` know `config` (durably); resolves once it does. */
export async function installConfig(
  rpc: RpcCaller,
  address: string,
  config: MetaConfig,
): Promise<void> {
  await rpc.call(address, "meta.install", { header: { config } }, 5000);
}

/** What an acceptor accepted, as a granted reply. */
function acceptedMessage(reply: { accepted: Ballot | null; register: Register }): RpcMessage {
  const { accepted, register } = reply;
  return {
    header: { granted: true, accepted, ...registerHeader(register) },
    data: register.value ?? undefined,
  };
}

function refusal(reply: { promised: Ballot } | { stale: MetaConfig }) {
  return "stale" in reply
    ? { granted: false, stale: reply.stale }
    : { granted: false, promised: reply.promised };
}

function refused(reply: RpcMessage): { ok: false; promised: Ballot } | {
  ok: false;
  stale: MetaConfig;
} {
  if (reply.header.stale !== undefined) {
    return { ok: false, stale: parseConfig(reply.header.stale) };
  }
  return { ok: false, promised: ballotOf(reply.header.promised) };
}

function registerHeader(register: Register) {
  return {
    version: register.version,
    change: register.change ?? null,
    present: register.value !== null,
  };
}

function keyOf(request: RpcMessage): string {
  const key = request.header.key;
  if (typeof key !== "string" || !isMetaKey(key)) {
    throw new TypeError(`bad metadata key ${JSON.stringify(key)}`);
  }
  return key;
}

function ballotOf(value: unknown): Ballot {
  const ballot = value as Ballot;
  if (
    typeof ballot !== "object" || ballot === null || !Number.isSafeInteger(ballot.counter) ||
    !Number.isSafeInteger(ballot.epoch) || typeof ballot.node !== "string" ||
    ballot.node.length > 64
  ) throw new TypeError("bad ballot");
  return { epoch: ballot.epoch, counter: ballot.counter, node: ballot.node };
}

function registerOf(message: RpcMessage): Register {
  const { version, change, present } = message.header;
  if (!Number.isSafeInteger(version) || (version as number) < 0) throw new TypeError("bad version");
  return {
    version: version as number,
    value: present === true ? (message.data ?? new Uint8Array()).slice() : null,
    ...(typeof change === "string" ? { change } : {}),
  };
}

/** An acceptor state in the framing of cluster messages: JSON header, then the value. */
export function encodeState(state: AcceptorState): Uint8Array {
  const { register, ...rest } = state;
  return encodeMessage({
    header: {
      ...rest,
      version: register.version,
      change: register.change ?? null,
      present: register.value !== null,
    },
    data: register.value ?? undefined,
  });
}

export function decodeState(bytes: Uint8Array): AcceptorState {
  const message = decodeMessage(bytes);
  const header = message.header as {
    promised: Ballot | null;
    accepted: Ballot | null;
  };
  // States written before ballots carried an epoch read as epoch 0 (older than any).
  const ballot = (value: Ballot | null) =>
    value === null ? null : { ...value, epoch: value.epoch ?? 0 };
  return {
    promised: ballot(header.promised),
    accepted: ballot(header.accepted),
    register: registerOf(message),
  };
}
