/**
 * Authentication of cluster traffic with the cluster key (HMAC-SHA-256).
 *
 * Every gossip datagram and every inter-node request is sealed in an envelope:
 *
 * ```
 * magic "ATC1" (4) | key id (8) | time ms (f64, 8) | nonce (8) | payload | mac (32)
 * ```
 *
 * The key id (a hash of the key) tells a wrong-cluster message from a forged one
 * in the logs; the MAC covers everything before it; the time bounds replays to a
 * window and the nonce, remembered for that window, rejects replays inside it.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** How far a sender's clock may be from ours, and how long nonces are remembered. */
export const replayWindowMs = 30_000;
/** Nonces remembered at most (a flood beyond this evicts the oldest). */
export const noncesRememberedMax = 500_000;
/** Shortest cluster key accepted, in bytes. */
export const clusterKeyBytesMin = 32;

const magic = 0x41544331; // "ATC1"
const headerBytes = 28;
const macBytes = 32;

/** Why an envelope was refused. */
export class AuthenticationError extends Error {
  override name = "AuthenticationError";
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

  /** Reads a key file (its trimmed text, e.g. `openssl rand -hex 32`). */
  static async fromFile(path: string): Promise<ClusterKey> {
    const text = (await Deno.readTextFile(path)).trim();
    return new ClusterKey(new TextEncoder().encode(text));
  }

  /** HMAC-SHA-256 of the parts, in order. */
  mac(...parts: Uint8Array[]): Uint8Array {
    const hmac = createHmac("sha256", this.#key);
    for (const part of parts) hmac.update(part);
    return hmac.digest();
  }

  /** Seals `payload` into an envelope stamped with `nowMs`. */
  seal(payload: Uint8Array, nowMs: number): Uint8Array<ArrayBuffer> {
    const envelope = new Uint8Array(headerBytes + payload.length + macBytes);
    const view = new DataView(envelope.buffer);
    view.setUint32(0, magic);
    envelope.set(this.id, 4);
    view.setFloat64(12, nowMs);
    envelope.set(randomBytes(8), 20);
    envelope.set(payload, headerBytes);
    envelope.set(
      this.mac(envelope.subarray(0, headerBytes + payload.length)),
      envelope.length - macBytes,
    );
    return envelope;
  }

  /**
   * Opens an envelope: checks key id, MAC, time window and nonce; returns the
   * payload or throws AuthenticationError saying which check failed.
   */
  open(envelope: Uint8Array, nowMs: number, nonces: NonceWindow): Uint8Array {
    if (envelope.length < headerBytes + macBytes) {
      throw new AuthenticationError("envelope too short");
    }
    const view = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength);
    if (view.getUint32(0) !== magic) throw new AuthenticationError("not an Atoll cluster message");
    if (!timingSafeEqual(envelope.subarray(4, 12), this.id)) {
      throw new AuthenticationError("sealed with another cluster key");
    }
    const sealed = envelope.subarray(0, envelope.length - macBytes);
    if (!timingSafeEqual(this.mac(sealed), envelope.subarray(envelope.length - macBytes))) {
      throw new AuthenticationError("bad MAC (forged or corrupted)");
    }
    const sentMs = view.getFloat64(12);
    if (!(Math.abs(nowMs - sentMs) <= replayWindowMs)) {
      throw new AuthenticationError(
        `stale or future timestamp (${Math.round(nowMs - sentMs)} ms off)`,
      );
    }
    if (!nonces.remember(envelope.subarray(20, 28), nowMs)) {
      throw new AuthenticationError("replayed message");
    }
    return envelope.subarray(headerBytes, envelope.length - macBytes);
  }
}

/** Nonces seen within the replay window. */
export class NonceWindow {
  #seen = new Map<string, number>();

  /** Records a nonce; false when it was already seen within the window. */
  remember(nonce: Uint8Array, nowMs: number): boolean {
    this.#expire(nowMs);
    const key = String.fromCharCode(...nonce);
    if (this.#seen.has(key)) return false;
    this.#seen.set(key, nowMs);
    if (this.#seen.size > noncesRememberedMax) {
      this.#seen.delete(this.#seen.keys().next().value!);
    }
    return true;
  }

  #expire(nowMs: number): void {
    for (const [key, seenMs] of this.#seen) {
      if (nowMs - seenMs <= 2 * replayWindowMs) break;
      this.#seen.delete(key);
    }
  }
}
