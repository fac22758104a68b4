/**
 * Every wire constant of links, the persistent connections that carry calls
 * between members (link_client.ts, link_server.ts), with their encoders and
 * decoders. All integers are big endian.
 *
 * A link opens with the 16-byte {@linkcode linkPreamble}, which tells it from
 * sealed HTTP on the shared cluster port (and which an HTTP server refuses at
 * once as a malformed request), then carries frames. Every frame is a
 * {@linkcode frameHeadBytes}-byte head and a body:
 *
 * ```
 * offset  bytes  field
 *      0      4  body bytes (what follows the head)
 *      4      4  request id: chosen by the caller, echoed by the reply; 0 in the handshake
 *      8      1  kind (FrameKind)
 *      9      1  method bytes (calls; 0 otherwise)
 *     10      2  reserved, 0
 *     12      4  JSON header bytes (calls, replies, failures; 0 otherwise)
 * ```
 *
 * A call's body is its method name, JSON header, then data; a reply's or a
 * failure's is its JSON header, then data. Handshake bodies are fixed layouts
 * (link_handshake.ts): hello, challenge, proof, then welcome or refusal.
 */
import { assert } from "../../core/assert.ts";
import type { BufferPool } from "../../core/mod.ts";
import { rpcBytesMax } from "./rpc_message.ts";

/** First bytes a client sends: "ATOLL-LINK/1", CR LF CR LF (a complete, invalid HTTP head). */
export const linkPreamble = new TextEncoder().encode("ATOLL-LINK/1\r\n\r\n");
/** Bytes of a frame head. */
export const frameHeadBytes = 16;
/** Bytes of a handshake nonce. */
export const nonceBytes = 32;
/** Bytes of a handshake proof (HMAC-SHA-256). */
export const proofBytes = 32;
/** Longest member id or address in a handshake, in UTF-8 bytes (a u8 length). */
export const handshakeNameBytesMax = 255;
/** Longest handshake frame body: bounds what an unauthenticated peer can make us read. */
export const handshakeBodyBytesMax = 1024;
/** Longest refusal detail sent to a peer, in UTF-8 bytes. */
export const refusalDetailBytesMax = 512;

/** Time an accepted connection has to complete its handshake, from its first byte on. */
export const linkHandshakeTimeoutMs = 5_000;
/**
 * Time a server keeps a link with no call in flight and nothing received.
 * Twice the client's, so that the client always closes an idle link first and
 * never sends a call into a link the server is closing under it.
 */
export const linkIdleTimeoutMs = 120_000;
/** Time a client keeps a link with no call in flight. */
export const linkClientIdleTimeoutMs = 60_000;
/** Time a link may stay silent after a call timed out on it before the client closes it. */
export const linkProbeTimeoutMs = 5_000;
/** Message data at most this long is copied into its frame: one write instead of two. */
export const linkInlineDataBytesMax = 64 * 1024;
/** Calls one link runs at once on the server; past it, the server reads no more (backpressure). */
export const linkCallsInFlightMax = 128;
/** Request and data bytes of the calls one link runs at once, past which the server reads no more. */
export const linkBytesInFlightMax = 64 * 1024 * 1024;
/** Links a client keeps to one peer: a second one spares small calls the wait behind a large one. */
export const linkConnectionsPerPeerMax = 2;

/** What a frame is. */
export const FrameKind = {
  /** Client: starts the handshake. */
  hello: 1,
  /** Server: its nonce and its proof. */
  challenge: 2,
  /** Client: its proof. */
  proof: 3,
  /** Server: the link is open. */
  welcome: 4,
  /** Either side: the handshake failed, and why (then the connection closes). */
  refusal: 5,
  /** Client: is the link alive? Answered by a pong at once, before any call. */
  ping: 6,
  pong: 7,
  /**
   * Server: this link takes no more calls. Every call it read is answered
   * before it closes; any other was not run, and may be sent again elsewhere.
   */
  goaway: 8,
  /** Client: a method call. */
  call: 16,
  /** Server: a call's result. */
  reply: 17,
  /** Server: the method threw; the header says what ({error, name}). */
  failure: 18,
} as const;

/** Time a client calls a peer that answered the preamble in HTTP over sealed HTTP before trying a link again. */
export const linkHttpPeerRecheckMs = 60_000;

/**
 * The peer answered the preamble in HTTP: it serves sealed HTTP only (a member
 * of an earlier version, during a rolling upgrade).
 */
export class NotALinkError extends Error {
  override name = "NotALinkError";
}

const httpAnswer = new TextEncoder().encode("HTTP/");

/** True when the bytes at `offset` of `bytes` begin an HTTP answer ("HTTP/"). */
export function isHttpAnswer(bytes: Uint8Array, offset: number): boolean {
  return httpAnswer.every((byte, i) => bytes[offset + i] === byte);
}

/** A decoded frame head. */
export interface FrameHead {
  bodyBytes: number;
  id: number;
  kind: number;
  methodBytes: number;
  headerBytes: number;
}

const kinds = new Set<number>(Object.values(FrameKind));

/** Writes `head` at `offset` of `bytes`. */
export function encodeFrameHead(bytes: Uint8Array, offset: number, head: FrameHead): void {
  assert(head.bodyBytes <= rpcBytesMax && head.methodBytes + head.headerBytes <= head.bodyBytes);
  assert(kinds.has(head.kind) && head.id >= 0 && head.id <= 0xffffffff, "frame kind and id");
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, frameHeadBytes);
  view.setUint32(0, head.bodyBytes);
  view.setUint32(4, head.id);
  view.setUint8(8, head.kind);
  view.setUint8(9, head.methodBytes);
  view.setUint16(10, 0);
  view.setUint32(12, head.headerBytes);
}

/**
 * Reads the head at `offset` of `bytes`; throws RangeError on a malformed one
 * (a framing violation: the connection closes).
 */
export function decodeFrameHead(bytes: Uint8Array, offset: number): FrameHead {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, frameHeadBytes);
  const head = {
    bodyBytes: view.getUint32(0),
    id: view.getUint32(4),
    kind: view.getUint8(8),
    methodBytes: view.getUint8(9),
    headerBytes: view.getUint32(12),
  };
  if (!kinds.has(head.kind) || view.getUint16(10) !== 0) {
    throw new RangeError(`Cannot read frame: unknown kind ${head.kind} or reserved bits set`);
  }
  if (head.methodBytes + head.headerBytes > head.bodyBytes) {
    throw new RangeError(`Cannot read frame: its parts exceed its ${head.bodyBytes} bytes`);
  }
  if (head.kind !== FrameKind.call && head.methodBytes !== 0) {
    throw new RangeError(`Cannot read frame: a method name in a frame of kind ${head.kind}`);
  }
  return head;
}

/** A frame as read: its head and its body. */
export interface Frame extends FrameHead {
  /**
   * Owned by the frame, except in a call, reply or failure with no data (its
   * method and header only): a view of the link's read buffer, valid until the
   * link reads its next frame, so its reader reads method and header at once.
   */
  body: Uint8Array;
  /** Where the body goes back once nothing uses it (a large call body read into a pooled buffer). */
  pool?: BufferPool;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const emptyHeader = encoder.encode("{}");
/**
 * Where headers are encoded before their frame is allocated, reused: a new
 * ArrayBuffer costs about a microsecond here whatever its size, and a
 * message took two (its header's bytes, then its frame).
 */
let headerScratch = new Uint8Array(4096);

/** `header` as JSON bytes: a view of the shared scratch buffer, valid until the next call. */
function encodeHeader(header: Record<string, unknown>): Uint8Array {
  let any = false;
  for (const _ in header) {
    any = true;
    break;
  }
  if (!any) return emptyHeader;
  const text = JSON.stringify(header);
  if (text.length * 3 > headerScratch.length) headerScratch = new Uint8Array(text.length * 3);
  const { written } = encoder.encodeInto(text, headerScratch);
  return headerScratch.subarray(0, written);
}

/**
 * A call, reply or failure as bytes to write: the head, method and JSON
 * header in one allocation (the only one), with the data inside it too when it is small
 * (one write), or as further parts when it is large (never copied; data
 * given in parts stays in those parts).
 */
export function encodeMessageFrame(
  frame: { kind: number; id: number; method?: Uint8Array },
  header: Record<string, unknown>,
  given: Uint8Array | readonly Uint8Array[] | undefined,
  inlineBytesMax = linkInlineDataBytesMax,
): Uint8Array[] {
  const parts = given === undefined ? [] : given instanceof Uint8Array ? [given] : given;
  const json = encodeHeader(header);
  const methodBytes = frame.method?.length ?? 0;
  const dataBytes = parts.reduce((sum, part) => sum + part.length, 0);
  const prefixBytes = frameHeadBytes + methodBytes + json.length;
  const bodyBytes = prefixBytes - frameHeadBytes + dataBytes;
  if (bodyBytes > rpcBytesMax) {
    throw new RangeError(`Cannot send ${bodyBytes} bytes in one message: at most ${rpcBytesMax}`);
  }
  const inline = dataBytes <= inlineBytesMax;
  const bytes = new Uint8Array(prefixBytes + (inline ? dataBytes : 0));
  encodeFrameHead(bytes, 0, {
    bodyBytes,
    id: frame.id,
    kind: frame.kind,
    methodBytes,
    headerBytes: json.length,
  });
  if (frame.method !== undefined) bytes.set(frame.method, frameHeadBytes);
  bytes.set(json, frameHeadBytes + methodBytes);
  if (!inline) return [bytes, ...parts.filter((part) => part.length > 0)];
  let at = prefixBytes;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return [bytes];
}

/** Sets the request id of a frame encoded by {@linkcode encodeMessageFrame} (a resend). */
export function setFrameId(frame: Uint8Array, id: number): void {
  new DataView(frame.buffer, frame.byteOffset, frameHeadBytes).setUint32(4, id);
}

/** The method name of a call frame. */
export function frameMethod(frame: Frame): string {
  return decoder.decode(frame.body.subarray(0, frame.methodBytes));
}

/** The JSON header of a call, reply or failure; throws TypeError or SyntaxError when malformed. */
export function frameHeader(frame: Frame): Record<string, unknown> {
  const start = frame.methodBytes;
  const header = JSON.parse(decoder.decode(frame.body.subarray(start, start + frame.headerBytes)));
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new TypeError("Cannot read message: its header is not an object");
  }
  return header;
}

/** The data of a call, reply or failure: a view into the frame's body, not a copy. */
export function frameData(frame: Frame): Uint8Array {
  return frame.body.subarray(frame.methodBytes + frame.headerBytes);
}

/** A frame with a body and no header (handshake frames, pings). */
export function encodeBareFrame(kind: number, id: number, body: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(frameHeadBytes + body.length);
  encodeFrameHead(bytes, 0, { bodyBytes: body.length, id, kind, methodBytes: 0, headerBytes: 0 });
  bytes.set(body, frameHeadBytes);
  return bytes;
}

assert(linkPreamble.length === 16 && frameHeadBytes === 16);
assert(linkClientIdleTimeoutMs < linkIdleTimeoutMs, "clients close idle links first");
assert(handshakeBodyBytesMax >= 8 + 16 + 2 * nonceBytes + 2 + 2 * handshakeNameBytesMax + 32);
assert(refusalDetailBytesMax + 1 <= handshakeBodyBytesMax);
assert(linkBytesInFlightMax > rpcBytesMax, "one largest call always fits");
