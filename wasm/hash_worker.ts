/**
 * The worker side of {@link HashPool}: hashes the blocks of one request at a time and
 * hands their buffers back to the pool. Blocks of one length, two to four of them, go
 * through the four-lane core together (sha256x4.ts); a block alone goes through
 * hash-wasm, which is faster for one.
 *
 * `deno bundle` makes one file of the whole program, so this module cannot always be its
 * own worker entry: the bundle's main module imports {@link serveHashJobs} and calls it
 * when it finds itself running as a worker (see {@link isWorkerContext}).
 *
 * @module
 */

import { createSHA256, type IHasher } from "hash-wasm";
import { isAllZero } from "./_is_all_zero.ts";
import {
  type HashJobReply,
  type HashJobRequest,
  type HashReply,
  type HashRequest,
  touchPageBytes,
  type TouchReply,
  type TouchRequest,
  transferList,
} from "./_hash_protocol.ts";
import { sha256Lanes, Sha256x4 } from "./sha256x4.ts";

/** The part of a dedicated worker's global scope this module uses. */
interface WorkerScope {
  addEventListener(
    type: "message",
    listener: (event: MessageEvent<HashRequest | TouchRequest>) => void,
  ): void;
  postMessage(message: HashReply | TouchReply, transfer?: Transferable[]): void;
}

/** Set once the message handler is installed, so a second call installs nothing. */
let serving = false;

/**
 * Returns true when this code runs inside a Web Worker rather than on the main thread.
 *
 * `WorkerGlobalScope` is looked up on `globalThis` because Deno's main-thread type library
 * does not declare it (and the main thread does not define it).
 */
export function isWorkerContext(): boolean {
  const scope = (globalThis as { WorkerGlobalScope?: abstract new () => unknown })
    .WorkerGlobalScope;
  return typeof scope === "function" && globalThis instanceof scope;
}

/**
 * Makes this worker answer the hash requests of a {@link HashPool} and the touch requests
 * of a MemoryToucher. Idempotent: calling it twice installs one handler. Must be called
 * inside a worker.
 */
export function serveHashJobs(): void {
  if (serving) return;
  if (!isWorkerContext()) {
    throw new Error("Cannot serve hash jobs: not running inside a worker");
  }
  serving = true;
  const scope = globalThis as unknown as WorkerScope;
  // Compiling and instantiating the WASM modules is asynchronous; requests that arrive
  // before it finishes simply wait on this promise, in arrival order.
  const ready = Promise.all([createSHA256(), Sha256x4.create()]);
  scope.addEventListener("message", async (event) => {
    if ("touch" in event.data) {
      const pages = new Uint8Array(event.data.touch);
      for (let at = 0; at < pages.length; at += touchPageBytes) pages[at] = 0;
      scope.postMessage({ touched: pages.length });
      return;
    }
    const request = event.data;
    let reply: HashReply;
    try {
      const [hasher, lanes] = await ready;
      reply = { jobs: hashRequest(hasher, lanes, request.jobs) };
    } catch (error) {
      reply = {
        jobs: request.jobs.map((job) => ({ ...echo(job), digest: null })),
        error: String(error),
      };
    }
    scope.postMessage(reply, transferList(reply.jobs.map((job) => job.buffer)));
  });
}

/** Hashes the blocks of one request: zero blocks skipped, blocks of one length together. */
function hashRequest(hasher: IHasher, lanes: Sha256x4, jobs: HashJobRequest[]): HashJobReply[] {
  const bytes = jobs.map((job) => new Uint8Array(job.buffer, job.byteOffset, job.byteLength));
  const digests: (Uint8Array | null)[] = jobs.map(() => null);
  const byLength = new Map<number, number[]>();
  for (const [i, job] of jobs.entries()) {
    if (job.detectZero && isAllZero(bytes[i])) continue;
    const group = byLength.get(job.byteLength);
    if (group === undefined) byLength.set(job.byteLength, [i]);
    else group.push(i);
  }
  for (const indexes of byLength.values()) {
    for (let at = 0; at < indexes.length; at += sha256Lanes) {
      const group = indexes.slice(at, at + sha256Lanes);
      if (group.length === 1) {
        hasher.init();
        hasher.update(bytes[group[0]]);
        digests[group[0]] = hasher.digest("binary");
        continue;
      }
      const results = lanes.hash(group.map((i) => bytes[i]));
      group.forEach((i, lane) => digests[i] = results[lane]);
    }
  }
  return jobs.map((job, i) => ({ ...echo(job), digest: digests[i] }));
}

/** The fields of a reply that echo the request, so the pool gets its buffer back. */
function echo(job: HashJobRequest): Omit<HashJobReply, "digest"> {
  return {
    id: job.id,
    buffer: job.buffer,
    byteOffset: job.byteOffset,
    byteLength: job.byteLength,
  };
}

if (import.meta.main && isWorkerContext()) serveHashJobs();
