/**
 * Requests between nodes: one sealed envelope each way over HTTP on the
 * cluster port. A message is a JSON header plus optional binary data.
 *
 * Freshness rests on sessions, not clocks (the envelope is in auth.ts):
 * - A client first says hello to a peer, on a channel of its own (a random
 *   nonce, sequence 0); the peer answers, on that channel, a session id it
 *   minted at random for this process.
 * - Every request then travels on (session id, counter from 1). The server keeps
 *   a sliding window of counters per session and refuses a replayed counter. It
 *   refuses an unknown session too (it restarted, or forgot the session): the
 *   client then says hello again and resends once, transparently. The refusal
 *   comes before any method runs, so resending is safe, and a server restart
 *   costs one round trip per peer.
 * - A reply travels on its request's (session, counter) and names the request's
 *   id (`re`): the client takes only the reply to the request it just sent.
 * - A replayed hello only makes the server mint a session nobody can use (a
 *   request needs the key), in a table bounded by {@linkcode rpcSessionsMax}.
 */
import { assert } from "../../core/assert.ts";
import { randomBytes, wallClockMs } from "../../core/mod.ts";
import { channelBytes, type ClusterKey, type SealStamp, toHex } from "./auth.ts";
import type { ClusterIdentity } from "./identity.ts";
import { ReplayGuard } from "./replay_guard.ts";
import {
  asRefusal,
  decodeMessage,
  encodeMessage,
  faults,
  fromHeader,
  readBounded,
  rpcBytesMax,
  type RpcMessage,
  type RpcMethod,
  type RpcOptions,
  sealedType,
} from "./rpc_message.ts";

export {
  decodeMessage,
  encodeMessage,
  faults,
  rpcBytesMax,
  RpcError,
  type RpcMessage,
  type RpcMethod,
  type RpcOptions,
} from "./rpc_message.ts";
export {
  RpcClient,
  rpcHelloTimeoutMs,
  rpcPeerSessionsMax,
  rpcTimeoutMsDefault,
} from "./rpc_client.ts";

/** Client sessions a server keeps (the least recently used is forgotten first). */
export const rpcSessionsMax = 4096;

/** An HTTP handler serving sealed calls to `methods`. */
export function rpcServer(
  key: ClusterKey,
  identity: ClusterIdentity,
  methods: Record<string, RpcMethod>,
  options: RpcOptions = {},
): (request: Request, info?: { remoteAddr: Deno.Addr }) => Promise<Response> {
  const wallClock = options.wallClock ?? wallClockMs;
  const sessions = new ReplayGuard(rpcSessionsMax);
  const fresh = (channel: Uint8Array, sequence: number) =>
    sequence === 0 ? null : sessions.accept(toHex(channel), sequence, false);
  const sealed = (reply: RpcMessage, on: Pick<SealStamp, "channel" | "sequence">, status = 200) =>
    new Response(key.seal(encodeMessage(reply), { nowMs: wallClock(), identity, ...on }), {
      status,
      headers: { "content-type": sealedType },
    });
  return async (request, info) => {
    if (request.method !== "POST" || new URL(request.url).pathname !== "/rpc") {
      return new Response("not found", { status: 404 });
    }
    if (faults.isolated()) {
      await request.body?.cancel();
      return new Response("isolated", { status: 503 });
    }
    let on: Pick<SealStamp, "channel" | "sequence">;
    let call: RpcMessage;
    try {
      const body = await readBounded(request, rpcBytesMax);
      const opened = key.open(body, { nowMs: wallClock(), identity, fresh });
      on = { channel: opened.channel, sequence: opened.sequence };
      call = decodeMessage(opened.payload);
    } catch (error) {
      if (error instanceof RangeError) {
        return new Response(`refused: ${error.message}`, { status: 413 });
      }
      const refusal = asRefusal(error);
      options.onRefusal?.(peerOf(request, info), refusal);
      const { channel, sequence } = refusal.sender;
      // An authentic message is refused in a sealed reply on its own channel, which the
      // client can trust (to say hello again); anyone else learns nothing but the refusal.
      if (channel === undefined || sequence === undefined) {
        return new Response(`refused (${refusal.reason}): ${refusal.detail}`, { status: 403 });
      }
      const header = { ok: false, refused: refusal.reason, error: refusal.detail };
      return sealed({ header }, { channel, sequence }, 403);
    }
    const id = String(call.header.id);
    if (on.sequence === 0) {
      if (call.header.method !== "hello") {
        const error = `Cannot call ${call.header.method}: no session yet (say hello first)`;
        return sealed({ header: { re: id, ok: false, error, name: "TypeError" } }, on);
      }
      const session = toHex(randomBytes(channelBytes));
      sessions.add(session);
      return sealed({ header: { re: id, ok: true, session } }, on);
    }
    return sealed(await dispatch(methods, call, id), on);
  };
}

async function dispatch(
  methods: Record<string, RpcMethod>,
  call: RpcMessage,
  id: string,
): Promise<RpcMessage> {
  const method = methods[String(call.header.method)];
  try {
    if (method === undefined) throw new TypeError(`unknown method ${call.header.method}`);
    const reply = await method(call);
    for (const reserved of ["re", "ok", "error", "name", "refused", "session"]) {
      assert(!(reserved in reply.header), `method ${call.header.method} set header.${reserved}`);
    }
    return { header: { ...reply.header, re: id, ok: true }, data: reply.data };
  } catch (error) {
    const failure = error as Error;
    return { header: { re: id, ok: false, error: failure.message, name: failure.name } };
  }
}

/**
 * The peer a request came from, for logs: its IP address, and the port it says it
 * listens on (its connections come from other ports).
 */
function peerOf(request: Request, info?: { remoteAddr: Deno.Addr }): string {
  const remote = info?.remoteAddr;
  if (remote === undefined || !("hostname" in remote)) return "unknown peer";
  const host = remote.hostname.includes(":") ? `[${remote.hostname}]` : remote.hostname;
  const port = request.headers.get(fromHeader)?.match(/:(\d{1,5})$/)?.[1];
  return port === undefined ? host : `${host}:${port}`;
}
