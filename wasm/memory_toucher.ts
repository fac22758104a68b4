/**
 * Memory written once by a worker thread before the event loop fills it. On a
 * machine whose hypervisor makes the first write of each page of a process
 * dear (2.6 ms a MiB on this kind of machine, against 0.05 for a copy into
 * memory written before), a `SharedArrayBuffer` one worker has touched costs
 * the thread that fills it only its copy: page tables are the process's, not
 * the thread's (docs/decisions.md, "Pages of the read cache touched ahead").
 *
 * One worker, started on the first request (the hash worker's module: it
 * answers touch requests too), one request at a time; a worker that fails
 * fails the requests waiting, and the next request starts another.
 *
 * @module
 */
import { resolveWorkerUrl } from "./_worker_url.ts";
import type { TouchReply, TouchRequest } from "./_hash_protocol.ts";

interface Pending {
  buffer: SharedArrayBuffer;
  done: PromiseWithResolvers<void>;
}

/** See the module doc. */
export class MemoryToucher {
  #url: URL | string | null;
  #worker: Worker | null = null;
  #queue: Pending[] = [];
  #running: Pending | null = null;
  #closed = false;

  /** `workerUrl`: the worker entry when not the hash worker beside this module (a bundle). */
  constructor(workerUrl?: URL | string) {
    this.#url = workerUrl ?? null;
  }

  /** Resolves once every page of `buffer` was written once by the worker. */
  touch(buffer: SharedArrayBuffer): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("Cannot touch memory: closed"));
    const pending = { buffer, done: Promise.withResolvers<void>() };
    this.#queue.push(pending);
    this.#next();
    return pending.done.promise;
  }

  /** Stops the worker; requests not answered yet fail. */
  close(): void {
    this.#closed = true;
    this.#worker?.terminate();
    this.#worker = null;
    this.#fail(new Error("Cannot touch memory: closed"));
  }

  #next(): void {
    if (this.#running !== null || this.#queue.length === 0) return;
    let worker: Worker;
    try {
      worker = this.#worker ??= this.#start();
    } catch (error) {
      this.#fail(new Error(`Cannot touch memory: cannot start a worker: ${error}`));
      return;
    }
    this.#running = this.#queue.shift()!;
    const request: TouchRequest = { touch: this.#running.buffer };
    worker.postMessage(request);
  }

  #start(): Worker {
    this.#url ??= resolveWorkerUrl(new URL("./hash_worker.ts", import.meta.url), Deno.mainModule);
    const worker = new Worker(this.#url, { type: "module" });
    worker.onmessage = (event: MessageEvent<TouchReply>) => {
      const running = this.#running;
      this.#running = null;
      if (running !== null && event.data.touched === running.buffer.byteLength) {
        running.done.resolve();
      } else {
        running?.done.reject(new Error("Cannot touch memory: the worker answered otherwise"));
      }
      this.#next();
    };
    worker.onerror = (event: ErrorEvent) => {
      // Without preventDefault Deno rethrows a worker's uncaught error in this thread.
      event.preventDefault();
      worker.terminate();
      this.#worker = null;
      this.#fail(new Error(`Cannot touch memory: the worker failed: ${event.message}`));
    };
    return worker;
  }

  #fail(error: Error): void {
    const failed = [...(this.#running === null ? [] : [this.#running]), ...this.#queue.splice(0)];
    this.#running = null;
    for (const pending of failed) pending.done.reject(error);
  }
}
