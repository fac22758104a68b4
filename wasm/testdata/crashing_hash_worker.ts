/**
 * A hash worker for tests that crashes (an uncaught error) when handed a block of exactly
 * {@link crashBlockBytes} bytes and hashes every other block normally.
 *
 * @module
 */

import { serveHashJobs } from "../hash_worker.ts";

/** Block length that makes this worker crash. */
export const crashBlockBytes = 13;

if (import.meta.main) {
  // Installed before serveHashJobs() so it runs first and can keep the job from it.
  globalThis.addEventListener("message", (event) => {
    const { jobs } = (event as MessageEvent<{ jobs: { byteLength: number }[] }>).data;
    if (!jobs.some((job) => job.byteLength === crashBlockBytes)) return;
    event.stopImmediatePropagation();
    setTimeout(() => {
      throw new Error("crash requested by the test");
    });
  });
  serveHashJobs();
}
