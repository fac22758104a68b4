/**
 * Membership wire messages: plain JSON values (the transport JSON-encodes them and
 * authenticates them with the cluster key) and their size limits; parse_messages.ts
 * validates a decoded value once, at the edge.
 *
 * @module
 */

import { assert } from "../../core/assert.ts";

/** Longest member id, in bytes (printable ASCII but `"` and `\\`, so bytes = characters). */
export const idBytesMax = 128;
/** Longest member address (`host:port`, or whatever the transport uses). */
export const addressBytesMax = 256;
/** Longest zone name. */
export const zoneBytesMax = 64;
/**
 * Largest datagram the membership builds, JSON included. memberlist's UDP buffer:
 * 1400 bytes fit a 1500-byte Ethernet MTU after IP and UDP headers, so a datagram is
 * never fragmented (one lost fragment would lose the whole message).
 */
export const datagramBytesMax = 1400;
/** Bytes of every datagram left to the transport for its HMAC tag and framing. */
export const envelopeBytesReserve = 128;
/** Most updates one message may carry; the byte budget keeps real messages far below. */
export const updatesPerMessageMax = 64;
/** Most members a push-pull state may list (memberlist sizes its timeouts for 10 000). */
export const membersMax = 10_000;
/** Largest sequence number or incarnation accepted from the wire. */
export const counterMax = Number.MAX_SAFE_INTEGER;

assert(envelopeBytesReserve < datagramBytesMax / 4);
// The shortest update is 42 bytes of JSON (`{"kind":"left","id":"x","incarnation":0},`).
assert(updatesPerMessageMax * 42 > datagramBytesMax, "the count limit never binds before bytes");

/** Where a member stands, as every node sees it. */
export type MemberStatus = "alive" | "suspect" | "dead" | "left";

/** What a member says about itself: stable for one incarnation. */
export interface MemberInfo {
  /** Unique, stable name of the node (printable ASCII but `"` and `\\`, {@linkcode idBytesMax} at most). */
  id: string;
  /** Where its membership messages go (the transport's address). */
  address: string;
  /** Failure domain, for placement; `null` when the operator gave none. */
  zone: string | null;
  /** Relative capacity, for placement (non-negative). */
  weight: number;
}

/** "Member `id` is alive at `incarnation`, and this is its info." */
export interface AliveUpdate extends MemberInfo {
  kind: "alive";
  incarnation: number;
}
/** "`from` could not reach member `id` at `incarnation`." */
export interface SuspectUpdate {
  kind: "suspect";
  id: string;
  incarnation: number;
  from: string;
}
/** "`from` declared member `id` dead at `incarnation`." */
export interface DeadUpdate {
  kind: "dead";
  id: string;
  incarnation: number;
  from: string;
}
/** "Member `id` left the cluster gracefully at `incarnation`." */
export interface LeftUpdate {
  kind: "left";
  id: string;
  incarnation: number;
}
/** A membership change, piggybacked on datagrams until it has been sent enough times. */
export type Update = AliveUpdate | SuspectUpdate | DeadUpdate | LeftUpdate;

/** Direct probe; also sent by a ping-req helper, and over a stream as the fallback. */
export interface PingMessage {
  type: "ping";
  seq: number;
  /** Id the sender believes lives at the address: a node with another id ignores it. */
  target: string;
  source: string;
  replyTo: string;
  /** Answer over a stream (the probe's fallback path) rather than a datagram. */
  stream: boolean;
  updates: Update[];
}
/** Answer to a ping, or a helper forwarding the target's answer (indirect ack). */
export interface AckMessage {
  type: "ack";
  seq: number;
  source: string;
  updates: Update[];
}
/** "Please ping `target` at `targetAddress` for me" (SWIM's indirect probe). */
export interface PingRequestMessage {
  type: "ping-req";
  seq: number;
  target: string;
  targetAddress: string;
  source: string;
  replyTo: string;
  updates: Update[];
}
/** Lifeguard: a helper that got no answer from the target says so, proving it is alive. */
export interface NackMessage {
  type: "nack";
  seq: number;
  source: string;
  updates: Update[];
}
/** Updates alone, sent every gossip interval while there are any to send. */
export interface GossipMessage {
  type: "gossip";
  source: string;
  updates: Update[];
}
/** One member in a full-state exchange. */
export interface MemberDigest extends MemberInfo {
  incarnation: number;
  status: MemberStatus;
}
/** Anti-entropy: a full-state exchange over a stream (also how a node joins). */
export interface PushPullMessage {
  type: "push-pull";
  phase: "request" | "response";
  /** A join: the answer's state is the cluster's and is not gossiped again. */
  join: boolean;
  source: string;
  replyTo: string;
  members: MemberDigest[];
}
/** Every membership message; `type` tells them apart. */
export type Message =
  | PingMessage
  | AckMessage
  | PingRequestMessage
  | NackMessage
  | GossipMessage
  | PushPullMessage;

/** Bytes `update` adds to a message's JSON (its own JSON plus a separating comma). */
export function updateBytes(update: Update): number {
  return JSON.stringify(update).length + 1;
}

/** A message that carries updates, with no updates yet. */
export type DatagramMessage = Exclude<Message, PushPullMessage>;

/** JSON bytes of each datagram type's keys and punctuation, with empty strings and no digits. */
const fixedBytes: Record<DatagramMessage["type"], number> = {
  "ping": fixed({
    type: "ping",
    seq: 0,
    target: "",
    source: "",
    replyTo: "",
    stream: false,
    updates: [],
  }),
  "ack": fixed({ type: "ack", seq: 0, source: "", updates: [] }),
  "nack": fixed({ type: "nack", seq: 0, source: "", updates: [] }),
  "ping-req": fixed({
    type: "ping-req",
    seq: 0,
    target: "",
    targetAddress: "",
    source: "",
    replyTo: "",
    updates: [],
  }),
  "gossip": fixed({ type: "gossip", source: "", updates: [] }),
};

function fixed(message: DatagramMessage): number {
  return JSON.stringify(message).length - ("seq" in message ? 1 : 0);
}

/** Digits a sequence number may take in JSON (2^53 has 16). */
const seqDigitsMax = 16;

/**
 * An upper bound of the JSON bytes of `message` without its updates, computed without
 * encoding it (datagrams are sized on every send).
 */
export function baseBytesMax(message: DatagramMessage): number {
  const bytes = fixedBytes[message.type] + message.source.length;
  switch (message.type) {
    case "ping":
      return bytes + seqDigitsMax + message.target.length + message.replyTo.length;
    case "ping-req":
      return bytes + seqDigitsMax + message.target.length + message.targetAddress.length +
        message.replyTo.length;
    case "ack":
    case "nack":
      return bytes + seqDigitsMax;
    case "gossip":
      return bytes;
  }
}
