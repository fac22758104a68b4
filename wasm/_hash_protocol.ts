/**
 * Messages between {@link HashPool} and its hash workers. One request is in flight per
 * worker; the reply carries the same `id` so the pool can assert it pairs them right.
 *
 * @module
 */

/** Asks a worker to hash `byteLength` bytes at `byteOffset` of `buffer`. */
export interface HashRequest {
  /** Job id assigned by the pool, echoed in the reply. */
  id: number;
  /** Whole buffer behind the caller's view; transferred unless it is shared memory. */
  buffer: ArrayBuffer | SharedArrayBuffer;
  byteOffset: number;
  byteLength: number;
  /** Skip hashing and reply with a null digest when every byte is zero. */
  detectZero: boolean;
}

/** A worker's answer to one {@link HashRequest}; `buffer` is transferred back. */
export interface HashReply {
  id: number;
  buffer: ArrayBuffer | SharedArrayBuffer;
  byteOffset: number;
  byteLength: number;
  /** SHA-256 of the bytes (32 bytes), or null for an all-zero block under detectZero. */
  digest: Uint8Array | null;
  /** Set when hashing failed inside the worker; digest is then null. */
  error?: string;
}

/** Bytes in a SHA-256 digest. */
export const sha256DigestBytes = 32;

/** The transfer list that hands `buffer` over without a copy (shared memory needs none). */
export function transferList(buffer: ArrayBuffer | SharedArrayBuffer): ArrayBuffer[] {
  return buffer instanceof ArrayBuffer ? [buffer] : [];
}
