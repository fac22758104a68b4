/**
 * Metadata across the cluster: the CASPaxos acceptor of each node keeps its
 * states in an acceptor log (`acceptor_log.ts`), and peers reach it over sealed
 * RPC (`px.prepare`, `px.accept`, `px.peek`, `px.list`). A proposer on any node changes a key
 * through the acceptors that placement gives that key.
 */
import { isMetaKey } from "../core/mod.ts";
import {
  Acceptor,
  type AcceptorLink,
  type AcceptorState,
  type AcceptorStore,
  type Ballot,
  type Register,
} from "./caspaxos.ts";
import { decodeMessage, encodeMessage } from "./rpc.ts";
import type { RpcClient, RpcMessage, RpcMethod } from "./rpc.ts";

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

/** The RPC methods that expose `acceptor` (over `engine`) to peers. */
export function acceptorMethods(
  acceptor: Acceptor,
  index: AcceptorIndex,
): Record<string, RpcMethod> {
  return {
    "px.list": async (request) => {
      return { header: { keys: await acceptedKeys(index, String(request.header.prefix)) } };
    },
    "px.prepare": async (request) => {
      const reply = await acceptor.prepare(keyOf(request), ballotOf(request.header.ballot));
      if (!reply.ok) return { header: { granted: false, promised: reply.promised } };
      const { register, accepted } = reply;
      return {
        header: {
          granted: true,
          accepted,
          version: register.version,
          change: register.change ?? null,
          present: register.value !== null,
        },
        data: register.value ?? undefined,
      };
    },
    "px.peek": async (request) => {
      const { accepted, register } = await acceptor.peek(keyOf(request));
      return {
        header: {
          accepted,
          version: register.version,
          change: register.change ?? null,
          present: register.value !== null,
        },
        data: register.value ?? undefined,
      };
    },
    "px.accept": async (request) => {
      const register = registerOf(request);
      const reply = await acceptor.accept(
        keyOf(request),
        ballotOf(request.header.ballot),
        register,
      );
      return {
        header: reply.ok ? { granted: true } : { granted: false, promised: reply.promised },
      };
    },
  };
}

/** An AcceptorLink to the acceptor of the node at `address`. */
export function rpcAcceptorLink(rpc: RpcClient, address: string): AcceptorLink {
  return {
    async prepare(key, ballot) {
      const reply = await rpc.call(address, "px.prepare", { header: { key, ballot } });
      if (reply.header.granted !== true) {
        return { ok: false, promised: ballotOf(reply.header.promised) };
      }
      return {
        ok: true,
        accepted: reply.header.accepted === null ? null : ballotOf(reply.header.accepted),
        register: registerOf(reply),
      };
    },
    async peek(key) {
      const reply = await rpc.call(address, "px.peek", { header: { key } });
      return {
        accepted: reply.header.accepted === null ? null : ballotOf(reply.header.accepted),
        register: registerOf(reply),
      };
    },
    async accept(key, ballot, register) {
      const reply = await rpc.call(address, "px.accept", {
        header: {
          key,
          ballot,
          version: register.version,
          change: register.change ?? null,
          present: register.value !== null,
        },
        data: register.value ?? undefined,
      });
      return reply.header.granted === true
        ? { ok: true }
        : { ok: false, promised: ballotOf(reply.header.promised) };
    },
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
    typeof ballot.node !== "string"
  ) throw new TypeError("bad ballot");
  return { counter: ballot.counter, node: ballot.node };
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
  return { promised: header.promised, accepted: header.accepted, register: registerOf(message) };
}
