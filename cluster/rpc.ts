/**
 * Requests between nodes: one sealed envelope each way over HTTP on the
 * cluster port. A message is a JSON header plus optional binary data; the
 * response names the request's id, so a response cannot be replayed onto
 * another request.
 */
import { assert } from "../core/assert.ts";
import { type ClusterKey, NonceWindow } from "./auth.ts";

/** Largest sealed request or response body (a 32 MiB write plus headers). */
export const rpcBytesMax = 40 * 1024 * 1024;
/** Default time a call may take before it fails. */
export const rpcTimeoutMsDefault = 10_000;

/**
 * Fault injection for tests of partitions (`serve --fault-file`): while
 * `isolated()` is true, this process neither sends nor answers cluster traffic.
 */
export const faults = { isolated: (): boolean => false };

/** A request or response: a JSON header and optional bytes. */
export interface RpcMessage {
  header: Record<string, unknown>;
  data?: Uint8Array;
}

/** A remote call failed: the peer answered an error, or could not be reached. */
export class RpcError extends Error {
  override name = "RpcError";
  constructor(
    message: string,
    readonly unreachable: boolean,
    options?: ErrorOptions & { remoteName?: string },
  ) {
    super(message, options);
    this.remoteName = options?.remoteName ?? null;
  }
  /** The name of the error the peer threw (e.g. "FencedError"), when it answered one. */
  readonly remoteName: string | null;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** u32 header length, JSON header, data. */
export function encodeMessage(message: RpcMessage): Uint8Array {
  const json = encoder.encode(JSON.stringify(message.header));
  const data = message.data ?? new Uint8Array();
  const bytes = new Uint8Array(4 + json.length + data.length);
  new DataView(bytes.buffer).setUint32(0, json.length);
  bytes.set(json, 4);
  bytes.set(data, 4 + json.length);
  return bytes;
}

/** Inverse of encodeMessage; throws TypeError on malformed bytes. */
export function decodeMessage(bytes: Uint8Array): RpcMessage {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = bytes.length >= 4 ? view.getUint32(0) : Infinity;
  if (4 + length > bytes.length) throw new TypeError("Cannot decode cluster message: truncated");
  const header = JSON.parse(decoder.decode(bytes.subarray(4, 4 + length)));
  if (typeof header !== "object" || header === null) {
    throw new TypeError("Cannot decode cluster message: header is not an object");
  }
  return { header, data: bytes.subarray(4 + length) };
}

/** Handles one method call from a peer; throws to answer an error. */
export type RpcMethod = (request: RpcMessage) => Promise<RpcMessage> | RpcMessage;

/** An HTTP handler serving sealed calls to `methods`. */
export function rpcServer(
  key: ClusterKey,
  methods: Record<string, RpcMethod>,
  now: () => number = Date.now,
): (request: Request) => Promise<Response> {
  const nonces = new NonceWindow();
  return async (request) => {
    if (request.method !== "POST" || new URL(request.url).pathname !== "/rpc") {
      return new Response("not found", { status: 404 });
    }
    if (faults.isolated()) {
      await request.body?.cancel();
      return new Response("isolated", { status: 503 });
    }
    let call: RpcMessage;
    try {
      const body = await readBounded(request, rpcBytesMax);
      call = decodeMessage(key.open(body, now(), nonces));
    } catch (error) {
      // Unauthenticated peers learn nothing but the refusal.
      return new Response(`refused: ${(error as Error).message}`, { status: 403 });
    }
    const id = String(call.header.id);
    const method = methods[String(call.header.method)];
    let reply: RpcMessage;
    try {
      if (method === undefined) throw new TypeError(`unknown method ${call.header.method}`);
      reply = await method(call);
      for (const reserved of ["re", "ok", "error", "name"]) {
        assert(!(reserved in reply.header), `method ${call.header.method} set header.${reserved}`);
      }
      reply = { header: { ...reply.header, re: id, ok: true }, data: reply.data };
    } catch (error) {
      const failure = error as Error;
      reply = { header: { re: id, ok: false, error: failure.message, name: failure.name } };
    }
    return new Response(key.seal(encodeMessage(reply), now()));
  };
}

/** Calls methods on peers. */
export class RpcClient {
  #key: ClusterKey;
  #nonces = new NonceWindow();
  #now: () => number;
  #nextId = 1;
  readonly #prefix = crypto.randomUUID();

  constructor(key: ClusterKey, now: () => number = Date.now) {
    this.#key = key;
    this.#now = now;
  }

  /** Calls `method` at `address` (HOST:PORT); throws RpcError on failure. */
  async call(
    address: string,
    method: string,
    message: RpcMessage = { header: {} },
    timeoutMs = rpcTimeoutMsDefault,
  ): Promise<RpcMessage> {
    if (faults.isolated()) {
      throw new RpcError(`Cannot call ${method} on ${address}: this node is isolated`, true);
    }
    const id = `${this.#prefix}/${this.#nextId++}`;
    const body = this.#key.seal(
      encodeMessage({ header: { ...message.header, id, method }, data: message.data }),
      this.#now(),
    );
    let response: Response;
    try {
      response = await fetch(`http://${address}/rpc`, {
        method: "POST",
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (cause) {
      throw new RpcError(`Cannot call ${method} on ${address}: ${(cause as Error).message}`, true, {
        cause,
      });
    }
    const bytes = await readBounded(response, rpcBytesMax).catch((cause) => {
      throw new RpcError(`Cannot call ${method} on ${address}: ${cause.message}`, true, { cause });
    });
    if (response.status !== 200) {
      throw new RpcError(
        `Cannot call ${method} on ${address}: ${new TextDecoder().decode(bytes.subarray(0, 200))}`,
        false,
      );
    }
    const reply = decodeMessage(this.#key.open(bytes, this.#now(), this.#nonces));
    if (reply.header.re !== id) {
      throw new RpcError(`Cannot call ${method}: mismatched reply`, false);
    }
    if (reply.header.ok !== true) {
      throw new RpcError(`${method} on ${address} failed: ${reply.header.error}`, false, {
        remoteName: String(reply.header.name),
      });
    }
    return reply;
  }
}

/** Reads a request or response body, refusing more than `bytesMax`. */
async function readBounded(message: Request | Response, bytesMax: number): Promise<Uint8Array> {
  const declared = Number(message.headers.get("content-length") ?? "0");
  if (declared > bytesMax) throw new RangeError(`body of ${declared} bytes exceeds ${bytesMax}`);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of message.body ?? []) {
    total += chunk.length;
    if (total > bytesMax) throw new RangeError(`body exceeds ${bytesMax} bytes`);
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}
