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
import {
  hashBatchMax,
  type HashReply,
  type HashRequest,
  sha256DigestBytes,
  transferList,
} from "./_hash_protocol.ts";

export { toHex } from "./to_hex.ts";

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

/** The result of {@link HashPool.hashBlock}. */
export interface BlockDigest {
  /** The same bytes handed in (ownership comes back after the transfer). */
  data: Uint8Array;
  /** SHA-256 of data, 32 bytes; null when detectZero was set and data is all zeros (then no hash is computed). */
  digest: Uint8Array | null;
}

/** Most workers one pool starts; far above any core count we deploy on. */
export const hashWorkersMax = 256;

/** One queued or running hash job. */
interface Job {
  id: number;
  data: Uint8Array;
  /** data.byteLength when queued; the view itself reads 0 once its buffer is transferred. */
  byteLength: number;
  detectZero: boolean;
  resolve: (result: BlockDigest) => void;
  reject: (error: Error) => void;
}

/** A started worker and the jobs of the one request it is running (none: idle). */
interface Slot {
  worker: Worker;
  jobs: Job[];
}

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
  /** Worker entry module; null for "native". */
  readonly #workerUrl: string | URL | null;
  readonly #slots: Slot[] = [];
  /** FIFO of jobs waiting for an idle worker; `#queueHead` indexes the oldest. */
  #queue: Job[] = [];
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
    this.#workerUrl = engine === "native" ? null : options.workerUrl ??
      resolveWorkerUrl(new URL("./hash_worker.ts", import.meta.url), Deno.mainModule);
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
    for (const slot of this.#slots.splice(0)) {
      slot.worker.terminate();
      for (const job of slot.jobs) job.reject(closedBeforeFinishError());
    }
    for (const job of this.#takeQueue()) job.reject(closedBeforeFinishError());
  }

  /**
   * Hands queued jobs to idle workers, up to {@linkcode hashBatchMax} each (four
   * blocks cost a worker what one and a half do alone), starting workers up to the
   * pool size.
   */
  #dispatch(): void {
    while (this.#queueHead < this.#queue.length) {
      let slot = this.#slots.find((candidate) => candidate.jobs.length === 0);
      if (slot === undefined && this.#slots.length >= this.workers) return;
      const jobs = this.#queue.slice(this.#queueHead, this.#queueHead + hashBatchMax);
      this.#queueHead += jobs.length;
      if (this.#queueHead === this.#queue.length) this.#takeQueue();
      try {
        slot ??= this.#startWorker();
      } catch (error) {
        for (const job of jobs) {
          job.reject(
            new Error(`Cannot hash block: cannot start hash worker: ${error}`, { cause: error }),
          );
        }
        continue;
      }
      this.#post(slot, jobs);
    }
  }

  /** Sends jobs to one idle worker, transferring their buffers. */
  #post(slot: Slot, jobs: Job[]): void {
    assert(slot.jobs.length === 0, "a worker runs one request at a time");
    const request: HashRequest = {
      jobs: jobs.map((job) => ({
        id: job.id,
        buffer: job.data.buffer,
        byteOffset: job.data.byteOffset,
        byteLength: job.data.byteLength,
        detectZero: job.detectZero,
      })),
    };
    try {
      slot.worker.postMessage(request, transferList(jobs.map((job) => job.data.buffer)));
      slot.jobs = jobs;
    } catch (error) {
      // For example a buffer that cannot be transferred (WebAssembly memory).
      for (const job of jobs) {
        job.reject(
          new Error(`Cannot hash block: cannot send it to a worker: ${error}`, { cause: error }),
        );
      }
    }
  }

  /** Starts one worker and wires its replies and crashes to the job it runs. */
  #startWorker(): Slot {
    assert(this.#workerUrl !== null, "only the wasm engine starts workers");
    const slot: Slot = { worker: new Worker(this.#workerUrl, { type: "module" }), jobs: [] };
    slot.worker.onmessage = (event: MessageEvent<HashReply>) => this.#onReply(slot, event.data);
    slot.worker.onmessageerror = () => {
      for (const job of this.#finishJobs(slot)) {
        job.reject(new Error("Cannot hash block: worker reply could not be read"));
      }
      this.#dispatch();
    };
    slot.worker.onerror = (event: ErrorEvent) => {
      // Without preventDefault Deno rethrows a worker's uncaught error in this thread.
      event.preventDefault();
      this.#retireWorker(slot);
      const cause = event.error ?? event.message;
      for (const job of this.#finishJobs(slot)) {
        job.reject(
          new Error(`Cannot hash block: hash worker crashed: ${event.message}`, { cause }),
        );
      }
      this.#dispatch();
    };
    this.#slots.push(slot);
    return slot;
  }

  /** Settles the jobs of `slot` from its worker's reply. */
  #onReply(slot: Slot, reply: HashReply): void {
    const jobs = this.#finishJobs(slot);
    assert(
      jobs.length === reply.jobs.length && jobs.every((job, i) => job.id === reply.jobs[i].id),
      "a reply answers the jobs its worker runs, in order",
    );
    for (const [i, job] of jobs.entries()) {
      const answer = reply.jobs[i];
      assert(answer.byteLength === job.byteLength, "a reply returns the bytes it was sent");
      if (reply.error !== undefined) {
        job.reject(new Error(`Cannot hash block: hash worker failed: ${reply.error}`));
        continue;
      }
      assert(
        answer.digest === null ? job.detectZero : answer.digest.byteLength === sha256DigestBytes,
        "a digest is 32 bytes, or null only under detectZero",
      );
      const data = new Uint8Array(answer.buffer, answer.byteOffset, answer.byteLength);
      job.resolve({ data, digest: answer.digest });
    }
    this.#dispatch();
  }

  /** Marks the worker of `slot` idle and returns the jobs it ran, for the caller to settle. */
  #finishJobs(slot: Slot): Job[] {
    const jobs = slot.jobs;
    slot.jobs = [];
    return jobs;
  }

  /** Terminates a crashed worker; #dispatch starts a fresh one when jobs wait. */
  #retireWorker(slot: Slot): void {
    slot.worker.terminate();
    const index = this.#slots.indexOf(slot);
    if (index >= 0) this.#slots.splice(index, 1);
  }

  /** Empties the queue and returns the jobs that were still waiting in it. */
  #takeQueue(): Job[] {
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

/** Checks an invariant; a failure is a bug in this module, never an operating error. */
function assert(condition: boolean, invariant: string): asserts condition {
  if (!condition) throw new Error(`Assertion failed: ${invariant}`);
}
