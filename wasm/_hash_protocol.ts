/**
 * Messages between {@link HashPool} and its hash workers. One request is in flight per
 * worker, carrying one to {@linkcode hashBatchMax} blocks; the reply answers them in order
 * with the same ids, so the pool can assert it pairs them right.
 *
 * @module
 */

/** Most blocks in one request: the lanes of the four-lane core (sha256x4.ts). */
export const hashBatchMax = 4;

/** One block of a request: `byteLength` bytes at `byteOffset` of `buffer`. */
export interface HashJobRequest {
  /** Job id assigned by the pool, echoed in the reply. */
  id: number;
  /** Whole buffer behind the caller's view; transferred unless it is shared memory. */
  buffer: ArrayBuffer | SharedArrayBuffer;
  byteOffset: number;
  byteLength: number;
  /** Skip hashing and reply with a null digest when every byte is zero. */
  detectZero: boolean;
}

/** Asks a worker to hash some blocks. */
export interface HashRequest {
  jobs: HashJobRequest[];
}

/** A worker's answer for one block; `buffer` is transferred back. */
export interface HashJobReply {
  id: number;
  buffer: ArrayBuffer | SharedArrayBuffer;
  byteOffset: number;
  byteLength: number;
  /** SHA-256 of the bytes (32 bytes), or null for an all-zero block under detectZero. */
  digest: Uint8Array | null;
}

/** A worker's answer to one {@link HashRequest}, its blocks in the request's order. */
export interface HashReply {
  jobs: HashJobReply[];
  /** Set when hashing failed inside the worker; every digest is then null. */
  error?: string;
}

/**
 * Asks a worker to write every memory page of `touch` once (MemoryToucher): memory first
 * written by another thread of the process costs the thread that fills it no page faults.
 */
export interface TouchRequest {
  touch: SharedArrayBuffer;
}

/** The answer to a {@link TouchRequest}: the bytes it covered. */
export interface TouchReply {
  touched: number;
}

/** Bytes of a memory page: a touch writes one byte in each. */
export const touchPageBytes = 4096;

/** Bytes in a SHA-256 digest. */
export const sha256DigestBytes = 32;

/** The transfer list that hands `buffers` over without a copy (shared memory needs none). */
export function transferList(buffers: (ArrayBuffer | SharedArrayBuffer)[]): ArrayBuffer[] {
  return [...new Set(buffers.filter((buffer) => buffer instanceof ArrayBuffer))];
}
