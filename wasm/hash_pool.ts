/**
 * SHA-256 of content blocks on every core: a FIFO queue of hash jobs served by a pool of
 * Web Workers running WebAssembly (hash_worker.ts), or by WebCrypto on the calling thread.
 * An idle worker takes up to {@linkcode hashBatchMax} queued blocks at once, which it
 * hashes together in the four-lane core when they are of one length: a caller with several
 * blocks ready (an upload) submits them together to have them hashed for the cost of one.
 *
 * @module
 */

import { isAllZero } from "./_is_all_zero.ts";
import { resolveWorkerUrl } from "./_worker_url.ts";
import { hashBatchMax, sha256DigestBytes } from "./_hash_protocol.ts";
import { assert, type BlockDigest, type HashJob, HashWorkers } from "./_hash_workers.ts";

export { toHex } from "./to_hex.ts";
export type { BlockDigest } from "./_hash_workers.ts";

/** Which SHA-256 implementation a {@link HashPool} runs. */
export type HashEngineName = "wasm" | "native";

/** Options for {@link HashPool}. */
export interface HashPoolOptions {
  /** "wasm" (hash-wasm in workers, the default) or "native" (WebCrypto, calling thread). */
  engine?: HashEngineName;
  /** Worker count for "wasm"; default navigator.hardwareConcurrency (at least 1). */
  workers?: number;
  /** Worker entry module; default wasm/hash_worker.ts, or the main module in a bundle. */
  workerUrl?: string | URL;
}

/** Most workers one pool starts; far above any core count we deploy on. */
export const hashWorkersMax = 256;

/**
 * Hashes blocks with SHA-256, off the calling thread when the engine is "wasm".
 *
 * Every pool must be closed: its workers keep the process alive until {@link close}.
 *
 * @example
 * ```ts
 * const pool = new HashPool();
 * const { data, digest } = await pool.hashBlock(block, { detectZero: true });
 * pool.close();
 * ```
 */
export class HashPool {
  /** The engine in use. */
  readonly engine: HashEngineName;
  /** Worker count for "wasm"; 0 for "native", which runs on the calling thread. */
  readonly workers: number;
  /**
   * Blocks a caller with several ready should submit in one turn: a worker hashes up to
   * {@linkcode hashBatchMax} together for the cost of about one and a half; WebCrypto one
   * at a time.
   */
  readonly batchBlocks: number;
  /** The workers of "wasm"; null for "native". */
  readonly #workers: HashWorkers | null;
  /** FIFO of jobs waiting for an idle worker; `#queueHead` indexes the oldest. */
  #queue: HashJob[] = [];
  #queueHead = 0;
  #nextJobId = 1;
  #closed = false;
  /** A dispatch is queued for the end of the current turn's microtasks. */
  #dispatchQueued = false;
  /** Buffers of the jobs queued or running (each may be in one job only). */
  readonly #inFlight = new WeakSet<ArrayBuffer>();

  /** Creates a pool; "wasm" workers start on demand, when jobs arrive. */
  constructor(options: HashPoolOptions = {}) {
    const engine = options.engine ?? "wasm";
    if (engine !== "wasm" && engine !== "native") {
      throw new TypeError(`Cannot create hash pool: unknown engine "${engine}"`);
    }
    const workers = options.workers ?? defaultWorkerCount();
    if (!Number.isInteger(workers) || workers < 1 || workers > hashWorkersMax) {
      throw new RangeError(
        `Cannot create hash pool: workers must be an integer in 1..${hashWorkersMax}, got ${workers}`,
      );
    }
    this.engine = engine;
    this.workers = engine === "wasm" ? workers : 0;
    this.batchBlocks = engine === "wasm" ? hashBatchMax : 1;
    this.#workers = engine === "native" ? null : new HashWorkers(
      options.workerUrl ??
        resolveWorkerUrl(new URL("./hash_worker.ts", import.meta.url), Deno.mainModule),
      workers,
      () => this.#dispatch(),
    );
  }

  /**
   * Hashes data. The ArrayBuffer behind data is TRANSFERRED to a worker (zero copy), at
   * the end of the current turn (with the other jobs submitted in it), and handed back as
   * result.data; the caller must not touch `data` until the promise settles. Any subarray
   * is fine: its whole `.buffer` travels, so other views of that buffer are detached too,
   * and two in-flight jobs cannot share one buffer. If detectZero, an all-zero block
   * returns digest null without being hashed.
   */
  async hashBlock(data: Uint8Array, options: { detectZero?: boolean } = {}): Promise<BlockDigest> {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError("Cannot hash block: data is not a Uint8Array");
    }
    if (this.#closed) throw new Error("Cannot hash block: hash pool is closed");
    const buffer = data.buffer;
    const owned = buffer instanceof ArrayBuffer;
    if (owned && (buffer.detached || this.#inFlight.has(buffer))) {
      throw new TypeError(
        "Cannot hash block: its ArrayBuffer is detached (already transferred, e.g. to another hashBlock() in flight)",
      );
    }
    const detectZero = options.detectZero ?? false;
    if (this.engine === "native") {
      const result = await hashNative(data, detectZero);
      // Same contract as the workers: a job still pending at close() rejects.
      if (this.#closed) throw closedBeforeFinishError();
      return result;
    }
    return await new Promise<BlockDigest>((resolve, reject) => {
      const job = { id: this.#nextJobId++, data, byteLength: data.byteLength, detectZero };
      if (owned) this.#inFlight.add(buffer);
      const settled = () => owned && this.#inFlight.delete(buffer);
      this.#queue.push({
        ...job,
        resolve: (result) => (settled(), resolve(result)),
        reject: (error) => (settled(), reject(error)),
      });
      // After the caller's other jobs of this turn, so that a worker takes them together.
      if (!this.#dispatchQueued) {
        this.#dispatchQueued = true;
        queueMicrotask(() => {
          this.#dispatchQueued = false;
          if (!this.#closed) this.#dispatch();
        });
      }
    });
  }

  /** Hashes data without transferring it (the pool copies it if it must); 32 bytes. */
  async digest(data: Uint8Array): Promise<Uint8Array> {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError("Cannot hash block: data is not a Uint8Array");
    }
    // Only a worker needs its own copy; WebCrypto never keeps the caller's buffer.
    const input = this.engine === "wasm" ? data.slice() : data;
    const { digest } = await this.hashBlock(input);
    assert(digest !== null && digest.byteLength === sha256DigestBytes, "digest is 32 bytes");
    return digest;
  }

  /** Terminates workers; pending jobs reject with an Error. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#workers?.close(closedBeforeFinishError);
    for (const job of this.#takeQueue()) job.reject(closedBeforeFinishError());
  }

  /**
   * Hands queued jobs to idle workers, up to {@linkcode hashBatchMax} each (four
   * blocks cost a worker what one and a half do alone), starting workers up to the
   * pool size.
   */
  #dispatch(): void {
    const workers = this.#workers;
    if (workers === null || this.#closed) return;
    while (this.#queueHead < this.#queue.length && workers.available) {
      const jobs = this.#queue.slice(this.#queueHead, this.#queueHead + hashBatchMax);
      this.#queueHead += jobs.length;
      if (this.#queueHead === this.#queue.length) this.#takeQueue();
      workers.post(jobs);
    }
  }

  /** Empties the queue and returns the jobs that were still waiting in it. */
  #takeQueue(): HashJob[] {
    const waiting = this.#queue.slice(this.#queueHead);
    this.#queue = [];
    this.#queueHead = 0;
    return waiting;
  }
}

/** The error of a job that was pending when its pool closed. */
function closedBeforeFinishError(): Error {
  return new Error("Cannot hash block: hash pool was closed before the job finished");
}

/** SHA-256 with WebCrypto on the calling thread; `data` is returned as it came. */
async function hashNative(data: Uint8Array, detectZero: boolean): Promise<BlockDigest> {
  if (detectZero && isAllZero(data)) return { data, digest: null };
  // WebCrypto wants an ArrayBuffer-backed view; a view of shared memory gets a copy.
  const input = data.buffer instanceof ArrayBuffer ? data as Uint8Array<ArrayBuffer> : data.slice();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", input));
  return { data, digest };
}

/** navigator.hardwareConcurrency, at least 1 and at most {@link hashWorkersMax}. */
function defaultWorkerCount(): number {
  const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
  return Math.min(Math.max(1, cores), hashWorkersMax);
}
