/**
 * Authentication of cluster traffic with the cluster key (HMAC-SHA-256).
 *
 * Every gossip datagram and every inter-node request and reply is sealed in an
 * envelope (big-endian):
 *
 * ```
 * offset  bytes  field
 *      0      4  magic "ATC2"
 *      4      8  key id: a hash of the cluster key, so a wrong-key message is told from a forged one
 *     12     16  cluster id of the sender; all zeros while it has none (it has not joined yet)
 *     28      8  sender's wall clock, ms since the epoch (f64), only used to measure clock skew
 *     36     16  channel: the sender's boot id (datagram), an RPC session id, or a hello nonce
 *     52      8  sequence number within the channel (u64): from 1; 0 only in an RPC hello
 *     60      n  payload
 *   60+n     32  MAC over every byte before it
 * ```
 *
 * Freshness does not rest on clocks: the receiver remembers, per channel, which
 * sequence numbers it accepted ({@linkcode ReplayGuard}) and refuses the rest. The
 * wall clock stamp only measures how far the sender's clock is from ours, so that a
 * member whose clock is badly off is refused with a reason an operator can act on.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { assert } from "../../core/assert.ts";
import { clusterIdBytes, type ClusterIdentity, isClusterId } from "./identity.ts";
import { envelopeBytesReserve } from "../membership/mod.ts";

/** How far a sender's wall clock may be from ours before its messages are refused. */
export const clockSkewMaxMs = 5 * 60_000;
/** Shortest cluster key accepted, in bytes. */
export const clusterKeyBytesMin = 32;
/** Length of a channel id (boot id, session id, hello nonce), in bytes. */
export const channelBytes = 16;

const magic = 0x41544332; // "ATC2"
const headerBytes = 60;
const macBytes = 32;
assert(headerBytes === 36 + channelBytes + 8 && 12 + clusterIdBytes === 28);
assert(headerBytes + macBytes <= envelopeBytesReserve, "a sealed datagram fits the MTU budget");

/** Why a message was refused, as counted and shown to operators. */
export type RefusalReason = "authentication" | "replay" | "clock-skew" | "cluster-id" | "session";

/** Every refusal reason, in the order operators see them. */
export const refusalReasons: readonly RefusalReason[] = [
  "authentication",
  "replay",
  "clock-skew",
  "cluster-id",
  "session",
];

/** A message was refused; `detail` says why in words an operator can act on. */
export class RefusalError extends Error {
  override name = "RefusalError";
  constructor(
    readonly reason: RefusalReason,
    readonly detail: string,
    /**
     * What an authentic message said (set once the MAC checked out), so the
     * refusal can be answered on the same channel; and the measured clock skew.
     */
    readonly sender: { channel?: Uint8Array; sequence?: number; skewMs?: number } = {},
  ) {
    super(`Cannot accept cluster message: ${detail}`);
  }
}

/** What a sender stamps on an envelope besides the payload. */
export interface SealStamp {
  /** Our wall clock now (ms since the epoch). */
  nowMs: number;
  identity: ClusterIdentity;
  /** {@linkcode channelBytes} bytes. */
  channel: Uint8Array;
  sequence: number;
}

/** What a receiver checks an envelope against. */
export interface OpenChecks {
  /** Our wall clock now (ms since the epoch). */
  nowMs: number;
  identity: ClusterIdentity;
  /**
   * Decides whether the message is new, once every other check passed (so a
   * refused message never uses up a sequence number): null accepts and records it.
   */
  fresh(channel: Uint8Array, sequence: number): "replay" | "session" | null;
}

/** An opened envelope. */
export interface Opened {
  payload: Uint8Array;
  channel: Uint8Array;
  sequence: number;
  /** Sender's wall clock minus ours (transit time included). */
  skewMs: number;
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The cluster key, and the seal/open operations that use it. */
export class ClusterKey {
  readonly #key: Uint8Array;
  /** 8 bytes that name the key without revealing it. */
  readonly id: Uint8Array;

  constructor(key: Uint8Array) {
    if (key.length < clusterKeyBytesMin) {
      throw new RangeError(
        `Cannot use cluster key: it has ${key.length} bytes, at least ${clusterKeyBytesMin} are needed`,
      );
    }
    this.#key = key.slice();
    this.id = createHash("sha256").update("atoll cluster key id\n").update(key).digest()
      .subarray(0, 8);
  }

  /** The key a key file holds: its trimmed text (e.g. `openssl rand -hex 32`). */
  static fromText(text: string): ClusterKey {
    return new ClusterKey(new TextEncoder().encode(text.trim()));
  }

  /** HMAC-SHA-256 of the parts, in order. */
  mac(...parts: Uint8Array[]): Uint8Array {
    const hmac = createHmac("sha256", this.#key);
    for (const part of parts) hmac.update(part);
    return hmac.digest();
  }

  /** Seals `payload` into an envelope. */
  seal(payload: Uint8Array, stamp: SealStamp): Uint8Array<ArrayBuffer> {
    assert(stamp.channel.length === channelBytes, "channel id length");
    assert(Number.isSafeInteger(stamp.sequence) && stamp.sequence >= 0, "sequence number");
    const envelope = new Uint8Array(headerBytes + payload.length + macBytes);
    const view = new DataView(envelope.buffer);
    view.setUint32(0, magic);
    envelope.set(this.id, 4);
    const clusterId = stamp.identity.current();
    if (clusterId !== null) {
      assert(isClusterId(clusterId), "cluster id shape");
      for (let i = 0; i < clusterIdBytes; i++) {
        envelope[12 + i] = parseInt(clusterId.slice(2 * i, 2 * i + 2), 16);
      }
    }
    view.setFloat64(28, stamp.nowMs);
    envelope.set(stamp.channel, 36);
    view.setBigUint64(52, BigInt(stamp.sequence));
    envelope.set(payload, headerBytes);
    envelope.set(
      this.mac(envelope.subarray(0, headerBytes + payload.length)),
      envelope.length - macBytes,
    );
    return envelope;
  }

  /**
   * Opens an envelope: checks key id and MAC, then cluster id, then clock skew,
   * then freshness; adopts the sender's cluster id when we have none. Returns
   * the payload, or throws a RefusalError naming the check that failed.
   */
  open(envelope: Uint8Array, checks: OpenChecks): Opened {
    const refuse = (detail: string) => new RefusalError("authentication", detail);
    if (envelope.length < headerBytes + macBytes) throw refuse("envelope too short");
    const view = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength);
    if (view.getUint32(0) !== magic) {
      throw refuse("not an Atoll cluster message (or an old version)");
    }
    if (!timingSafeEqual(envelope.subarray(4, 12), this.id)) {
      throw refuse("sealed with another cluster key");
    }
    const sealed = envelope.subarray(0, envelope.length - macBytes);
    if (!timingSafeEqual(this.mac(sealed), envelope.subarray(envelope.length - macBytes))) {
      throw refuse("bad MAC (forged or corrupted)");
    }
    const channel = envelope.subarray(36, 52);
    const wideSequence = view.getBigUint64(52);
    if (wideSequence > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw refuse("sequence number out of range");
    }
    const sequence = Number(wideSequence);
    const skewMs = view.getFloat64(28) - checks.nowMs;
    const sender = { channel, sequence, skewMs };
    const theirs = clusterIdOf(envelope.subarray(12, 28));
    const ours = checks.identity.current();
    if (theirs !== null && ours !== null && theirs !== ours) {
      throw new RefusalError(
        "cluster-id",
        `the sender belongs to cluster ${theirs}, this node to cluster ${ours}`,
        sender,
      );
    }
    if (!(Math.abs(skewMs) <= clockSkewMaxMs)) {
      throw new RefusalError("clock-skew", describeSkew(skewMs), sender);
    }
    const stale = checks.fresh(channel, sequence);
    if (stale === "replay") {
      throw new RefusalError("replay", `replayed or too old (sequence ${sequence})`, sender);
    }
    if (stale === "session") {
      throw new RefusalError(
        "session",
        "unknown session (opened before this process started?)",
        sender,
      );
    }
    if (theirs !== null && ours === null) checks.identity.adopt(theirs);
    return {
      payload: envelope.subarray(headerBytes, envelope.length - macBytes),
      channel,
      sequence,
      skewMs,
    };
  }
}

/** "clock 600 s ahead of ours (limit 300 s)". */
export function describeSkew(skewMs: number): string {
  const seconds = Number.isFinite(skewMs) ? `${Math.round(Math.abs(skewMs) / 1000)} s` : "far";
  const limit = `limit ${clockSkewMaxMs / 1000} s`;
  return `clock ${seconds} ${skewMs > 0 ? "ahead of" : "behind"} ours (${limit})`;
}

/** The hex cluster id in `bytes`, or null for all zeros (a node that has not joined). */
function clusterIdOf(bytes: Uint8Array): string | null {
  return bytes.every((byte) => byte === 0) ? null : toHex(bytes);
}
