/** The client side of requests between nodes (the protocol is described in rpc.ts). */
import { channelBytes, type ClusterKey, RefusalError, type SealStamp, toHex } from "./auth.ts";
import { randomBytes, randomId, wallClockMs } from "../../core/mod.ts";
import { postRequest } from "./net_env.ts";
import type { ClusterIdentity } from "./identity.ts";
import {
  asRefusal,
  decodeMessage,
  decoder,
  encodeMessage,
  faults,
  fromHeader,
  joinedData,
  type OutgoingMessage,
  readBounded,
  rpcBytesMax,
  RpcError,
  type RpcMessage,
  type RpcOptions,
  sealedType,
} from "./rpc_message.ts";

/** Default time a call may take before it fails. */
export const rpcTimeoutMsDefault = 10_000;
/** Longest a hello may take (callers waiting on it still give up at their own timeout). */
export const rpcHelloTimeoutMs = 5_000;
/** Peers a client keeps a session with (the least recently opened is forgotten first). */
export const rpcPeerSessionsMax = 4096;

interface Session {
  id: Uint8Array;
  /** Counter of the next request. */
  next: number;
}

/**
 * What cluster code needs of RPC: call a method on a peer. {@linkcode RpcClient}
 * does it over sealed HTTP; the deterministic simulation over its virtual network.
 */
export interface RpcCaller {
  /**
   * Calls `method` at `address`; throws RpcError when the peer answered an
   * error (`remoteName` names it) or could not be reached (`unreachable`).
   */
  call(
    address: string,
    method: string,
    message?: OutgoingMessage,
    timeoutMs?: number,
    options?: CallOptions,
  ): Promise<RpcMessage>;
}

/** Options of {@linkcode RpcCaller.call}. */
export interface CallOptions {
  /**
   * The caller gives the reply's data back with `release()` once it is done
   * with it (it copies the data out): a transport may then read the reply
   * into a reused buffer. One that does not sets no `release`.
   */
  pooledReply?: boolean;
}

/** Calls methods on peers over sealed HTTP. */
export class RpcClient implements RpcCaller {
  #key: ClusterKey;
  #identity: ClusterIdentity;
  #options: RpcOptions;
  #wallClock: () => number;
  #sessions = new Map<string, Promise<Session>>();
  #nextId = 1;
  readonly #prefix = randomId();

  constructor(key: ClusterKey, identity: ClusterIdentity, options: RpcOptions = {}) {
    this.#key = key;
    this.#identity = identity;
    this.#options = options;
    this.#wallClock = options.wallClock ?? wallClockMs;
  }

  /** Calls `method` at `address` (HOST:PORT); throws RpcError on failure. */
  async call(
    address: string,
    method: string,
    message: OutgoingMessage = { header: {} },
    timeoutMs = rpcTimeoutMsDefault,
  ): Promise<RpcMessage> {
    if (faults.isolated()) {
      throw new RpcError(`Cannot call ${method} on ${address}: this node is isolated`, true);
    }
    const signal = AbortSignal.timeout(timeoutMs);
    for (let attempt = 1;; attempt++) {
      const opening = this.#session(address);
      const session = await abortable(opening, signal).catch((cause) => {
        throw cause instanceof RpcError ? cause : unreachable(method, address, cause);
      });
      const on = { channel: session.id, sequence: session.next++ };
      const reply = await this.#exchange(address, method, message, on, signal);
      if (reply.header.refused === "session" && attempt === 1) {
        // The peer restarted or forgot the session, and ran nothing: hello again, resend.
        if (this.#sessions.get(address) === opening) this.#sessions.delete(address);
        continue;
      }
      if (reply.header.refused !== undefined) {
        const detail = `refused (${reply.header.refused}): ${reply.header.error}`;
        throw new RpcError(`Cannot call ${method} on ${address}: ${detail}`, false);
      }
      if (reply.header.ok !== true) {
        throw new RpcError(`${method} on ${address} failed: ${reply.header.error}`, false, {
          remoteName: String(reply.header.name),
        });
      }
      return reply;
    }
  }

  /** The session with `address`, saying hello first when there is none. */
  #session(address: string): Promise<Session> {
    let session = this.#sessions.get(address);
    if (session === undefined) {
      session = this.#hello(address);
      this.#sessions.set(address, session);
      const opening = session;
      opening.catch(() => {
        if (this.#sessions.get(address) === opening) this.#sessions.delete(address);
      });
      if (this.#sessions.size > rpcPeerSessionsMax) {
        this.#sessions.delete(this.#sessions.keys().next().value!);
      }
    }
    return session;
  }

  async #hello(address: string): Promise<Session> {
    const nonce = randomBytes(channelBytes);
    const on = { channel: nonce, sequence: 0 };
    const signal = AbortSignal.timeout(rpcHelloTimeoutMs);
    const reply = await this.#exchange(address, "hello", { header: {} }, on, signal);
    const session = reply.header.session;
    if (
      reply.header.ok !== true || typeof session !== "string" || !/^[0-9a-f]{32}$/.test(session)
    ) {
      throw new RpcError(`Cannot open a session with ${address}: ${reply.header.error}`, false);
    }
    const id = new Uint8Array(channelBytes);
    for (let i = 0; i < channelBytes; i++) id[i] = parseInt(session.slice(2 * i, 2 * i + 2), 16);
    return { id, next: 1 };
  }

  /** Sends one sealed request on `on`, and opens the reply made for it. */
  async #exchange(
    address: string,
    method: string,
    message: OutgoingMessage,
    on: Pick<SealStamp, "channel" | "sequence">,
    signal: AbortSignal,
  ): Promise<RpcMessage> {
    const id = `${this.#prefix}/${this.#nextId++}`;
    const body = this.#key.seal(
      encodeMessage({ header: { ...message.header, id, method }, data: joinedData(message.data) }),
      { nowMs: this.#wallClock(), identity: this.#identity, ...on },
    );
    const from = this.#options.from;
    let response: Response;
    try {
      response = await postRequest(address, body, {
        signal,
        headers: from === undefined ? {} : { [fromHeader]: from },
      });
    } catch (cause) {
      throw unreachable(method, address, cause);
    }
    const bytes = await readBounded(response, rpcBytesMax).catch((cause) => {
      throw unreachable(method, address, cause);
    });
    if (response.headers.get("content-type") !== sealedType) {
      const text = decoder.decode(bytes.subarray(0, 200));
      throw new RpcError(`Cannot call ${method} on ${address}: ${text}`, false);
    }
    let reply: RpcMessage;
    try {
      const opened = this.#key.open(bytes, {
        nowMs: this.#wallClock(),
        identity: this.#identity,
        fresh: (channel, sequence) =>
          sequence === on.sequence && toHex(channel) === toHex(on.channel) ? null : "replay",
      });
      reply = decodeMessage(opened.payload);
      // Besides its channel and sequence, a reply names its request (a refusal cannot:
      // it was refused before its header was read).
      if (reply.header.refused === undefined && reply.header.re !== id) {
        throw new RefusalError("replay", `reply to another request (${reply.header.re})`);
      }
    } catch (error) {
      const refusal = asRefusal(error);
      this.#options.onRefusal?.(address, refusal);
      const detail = `refused its reply (${refusal.reason}): ${refusal.detail}`;
      throw new RpcError(`Cannot call ${method} on ${address}: ${detail}`, false, {
        cause: refusal,
      });
    }
    return reply;
  }
}

function unreachable(method: string, address: string, cause: unknown): RpcError {
  return new RpcError(`Cannot call ${method} on ${address}: ${(cause as Error).message}`, true, {
    cause,
  });
}

/** `promise`, or a rejection once `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
