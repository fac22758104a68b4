/**
 * The worker side of {@link HashPool}: hashes one block at a time with one hash-wasm
 * SHA-256 instance per worker, and hands each block's buffer back to the pool.
 *
 * `deno bundle` makes one file of the whole program, so this module cannot always be its
 * own worker entry: the bundle's main module imports {@link serveHashJobs} and calls it
 * when it finds itself running as a worker (see {@link isWorkerContext}).
 *
 * @module
 */

import { createSHA256, type IHasher } from "hash-wasm";
import { isAllZero } from "./_is_all_zero.ts";
import { type HashReply, type HashRequest, transferList } from "./_hash_protocol.ts";

/** The part of a dedicated worker's global scope this module uses. */
interface WorkerScope {
  addEventListener(type: "message", listener: (event: MessageEvent<HashRequest>) => void): void;
  postMessage(message: HashReply, transfer: Transferable[]): void;
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
 * Makes this worker answer the hash requests of a {@link HashPool}. Idempotent: calling it
 * twice installs one handler. Must be called inside a worker.
 */
export function serveHashJobs(): void {
  if (serving) return;
  if (!isWorkerContext()) {
    throw new Error("Cannot serve hash jobs: not running inside a worker");
  }
  serving = true;
  const scope = globalThis as unknown as WorkerScope;
  // Compiling and instantiating the WASM module is asynchronous; requests that arrive
  // before it finishes simply wait on this promise, in arrival order.
  const hasherReady = createSHA256();
  scope.addEventListener("message", async (event) => {
    const request = event.data;
    let reply: HashReply;
    try {
      reply = hashRequest(await hasherReady, request);
    } catch (error) {
      reply = { ...replyHeader(request), digest: null, error: String(error) };
    }
    scope.postMessage(reply, transferList(reply.buffer));
  });
}

/** Hashes the bytes one request names, reusing `hasher`. */
function hashRequest(hasher: IHasher, request: HashRequest): HashReply {
  const bytes = new Uint8Array(request.buffer, request.byteOffset, request.byteLength);
  if (request.detectZero && isAllZero(bytes)) {
    return { ...replyHeader(request), digest: null };
  }
  hasher.init();
  hasher.update(bytes);
  return { ...replyHeader(request), digest: hasher.digest("binary") };
}

/** The fields of a reply that echo the request, so the pool gets its buffer back. */
function replyHeader(request: HashRequest): Omit<HashReply, "digest"> {
  return {
    id: request.id,
    buffer: request.buffer,
    byteOffset: request.byteOffset,
    byteLength: request.byteLength,
  };
}

if (import.meta.main && isWorkerContext()) serveHashJobs();
