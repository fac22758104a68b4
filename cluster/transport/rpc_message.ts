/**
 * The wire shape of requests between nodes (see rpc.ts for the protocol): a JSON
 * header plus optional bytes, sealed; the errors a call fails with; and the
 * pieces the RPC server and client share.
 */
import { Buffer } from "node:buffer";
import { RefusalError } from "./auth.ts";
import { assert } from "../../core/assert.ts";
import { mapPageBytesMax, recordBytesMax } from "../../core/limits.ts";

/** Largest sealed request or response body (a 32 MiB write plus headers). */
export const rpcBytesMax = 40 * 1024 * 1024;

// Whatever the size of a volume, its record and each page of its map fit in one request
// (with room for the envelope): no size the API accepts can exceed a message.
assert(recordBytesMax + 1024 * 1024 <= rpcBytesMax, "a record fits in one cluster request");
assert(mapPageBytesMax + 1024 * 1024 <= rpcBytesMax, "a map page fits in one cluster request");

/**
 * Fault injection for tests of partitions (`serve --fault-file`): while
 * `isolated()` is true, this process neither sends nor answers cluster traffic.
 */
export const faults = { isolated: (): boolean => false };

/** A request or response: a JSON header and optional bytes. */
export interface RpcMessage {
  header: Record<string, unknown>;
  data?: Uint8Array;
  /**
   * A method's reply: called once its data was written to a link, after which
   * the method may use that buffer again (other transports copy the data and
   * may never call it: the buffer is then left to the garbage collector).
   */
  sent?: () => void;
  /**
   * A call whose data lies in a transport's reused buffer: a method that goes
   * on using `data` after it answered says until when with this (the buffer is
   * reused once every promise given settled). A call without it owns its data.
   */
  keep?: (until: Promise<unknown>) => void;
  /**
   * A reply read into a pooled buffer: the caller gives the buffer back with
   * this once it is done with `data` (optional: one never given back is collected).
   */
  release?: () => void;
}

/**
 * A message to send: its data may be given in parts, which go out in order
 * without being copied together first (a batch of writes, each from its own
 * buffer). The caller must not change them until the call settled.
 */
export interface OutgoingMessage {
  header: Record<string, unknown>;
  data?: Uint8Array | readonly Uint8Array[];
}

/** The data of an outgoing message in one piece (a copy only when it came in parts). */
export function joinedData(data: OutgoingMessage["data"]): Uint8Array | undefined {
  if (data === undefined || data instanceof Uint8Array) return data;
  return data.length === 1 ? data[0] : Buffer.concat(data);
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

/** Clock and observer of an RPC server or client (ClusterNode counts refusals). */
export interface RpcOptions {
  /** The wall clock stamped on envelopes (tests shift it). */
  wallClock?: () => number;
  /** Told of every message refused, with the peer it came from. */
  onRefusal?: (peer: string, refusal: RefusalError) => void;
  /** Client: this node's cluster address, sent so that peers can name it in their logs. */
  from?: string;
}

/** Content type of a sealed body; anything else is a plain-text refusal. */
export const sealedType = "application/x-atoll-sealed";
/** Request header naming the caller's cluster address (unauthenticated: only for logs). */
export const fromHeader = "x-atoll-from";

const encoder = new TextEncoder();
/** UTF-8 text of refusals and headers. */
export const decoder = new TextDecoder();

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

/** The refusal a failure to open or decode a message amounts to. */
export function asRefusal(error: unknown): RefusalError {
  if (error instanceof RefusalError) return error;
  if (error instanceof TypeError || error instanceof SyntaxError) {
    return new RefusalError("authentication", `malformed message (${error.message})`);
  }
  throw error;
}

/** Reads a request or response body, refusing more than `bytesMax`. */
export async function readBounded(
  message: Request | Response,
  bytesMax: number,
): Promise<Uint8Array> {
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
