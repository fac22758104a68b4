/**
 * The workers of a HashPool (hash_pool.ts): started on demand up to the pool's
 * size, each running one request (up to `hashBatchMax` jobs) at a
 * time; their replies and crashes settle the jobs they ran. A crashed worker is
 * retired; the pool starts a fresh one when jobs wait.
 *
 * @module
 */

import {
  type HashReply,
  type HashRequest,
  sha256DigestBytes,
  transferList,
} from "./_hash_protocol.ts";

/** The result of a hash job (HashPool.hashBlock). */
export interface BlockDigest {
  /** The same bytes handed in (ownership comes back after the transfer). */
  data: Uint8Array;
  /** SHA-256 of data, 32 bytes; null when detectZero was set and data is all zeros (then no hash is computed). */
  digest: Uint8Array | null;
}

/** One queued or running hash job. */
export interface HashJob {
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
  jobs: HashJob[];
}

/** See the module doc. */
export class HashWorkers {
  readonly #url: string | URL;
  readonly #size: number;
  /** Called when a worker becomes idle (or is retired): queued jobs may go on. */
  readonly #idle: () => void;
  readonly #slots: Slot[] = [];

  constructor(url: string | URL, size: number, idle: () => void) {
    this.#url = url;
    this.#size = size;
    this.#idle = idle;
  }

  /** True when a request can go now: a worker is idle, or one more may start. */
  get available(): boolean {
    return this.#slots.length < this.#size || this.#slots.some((slot) => slot.jobs.length === 0);
  }

  /**
   * Sends `jobs` to an idle worker (started if none is and the pool may grow),
   * transferring their buffers; jobs that cannot go are rejected here.
   */
  post(jobs: HashJob[]): void {
    let slot = this.#slots.find((candidate) => candidate.jobs.length === 0);
    try {
      slot ??= this.#start();
    } catch (error) {
      for (const job of jobs) {
        job.reject(
          new Error(`Cannot hash block: cannot start hash worker: ${error}`, { cause: error }),
        );
      }
      return;
    }
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

  /** Terminates every worker and rejects the jobs they ran with `error()`. */
  close(error: () => Error): void {
    for (const slot of this.#slots.splice(0)) {
      slot.worker.terminate();
      for (const job of slot.jobs) job.reject(error());
    }
  }

  /** Starts one worker and wires its replies and crashes to the jobs it runs. */
  #start(): Slot {
    if (this.#slots.length >= this.#size) throw new Error("the pool has all its workers");
    const slot: Slot = { worker: new Worker(this.#url, { type: "module" }), jobs: [] };
    slot.worker.onmessage = (event: MessageEvent<HashReply>) => this.#onReply(slot, event.data);
    slot.worker.onmessageerror = () => {
      for (const job of finishJobs(slot)) {
        job.reject(new Error("Cannot hash block: worker reply could not be read"));
      }
      this.#idle();
    };
    slot.worker.onerror = (event: ErrorEvent) => {
      // Without preventDefault Deno rethrows a worker's uncaught error in this thread.
      event.preventDefault();
      slot.worker.terminate();
      const index = this.#slots.indexOf(slot);
      if (index >= 0) this.#slots.splice(index, 1);
      const cause = event.error ?? event.message;
      for (const job of finishJobs(slot)) {
        job.reject(
          new Error(`Cannot hash block: hash worker crashed: ${event.message}`, { cause }),
        );
      }
      this.#idle();
    };
    this.#slots.push(slot);
    return slot;
  }

  /** Settles the jobs of `slot` from its worker's reply. */
  #onReply(slot: Slot, reply: HashReply): void {
    const jobs = finishJobs(slot);
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
    this.#idle();
  }
}

/** Marks the worker of `slot` idle and returns the jobs it ran, for the caller to settle. */
function finishJobs(slot: Slot): HashJob[] {
  const jobs = slot.jobs;
  slot.jobs = [];
  return jobs;
}

/** Checks an invariant; a failure is a bug in this module, never an operating error. */
export function assert(condition: boolean, invariant: string): asserts condition {
  if (!condition) throw new Error(`Assertion failed: ${invariant}`);
}
