import assert from "node:assert/strict";
import { resolveWorkerUrl } from "./_worker_url.ts";

const main = "file:///srv/atoll/dist/atoll.js";

Deno.test("resolveWorkerUrl() picks hash_worker.ts when it exists beside the pool", () => {
  const beside = new URL("./hash_worker.ts", import.meta.url);
  assert.equal(resolveWorkerUrl(beside, main), beside);
});

Deno.test("resolveWorkerUrl() falls back to the main module when the file is missing", () => {
  // This is the `deno bundle` case: the pool's import.meta.url is the bundle file.
  const beside = new URL("./no_such_dir/hash_worker.ts", import.meta.url);
  assert.equal(resolveWorkerUrl(beside, main), main);
  assert.equal(resolveWorkerUrl(new URL("https://example.com/hash_worker.ts"), main), main);
});

Deno.test("resolveWorkerUrl() explains itself when there is nothing to fall back to", () => {
  const beside = new URL("./no_such_dir/hash_worker.ts", import.meta.url);
  assert.throws(
    () => resolveWorkerUrl(beside, undefined),
    /Cannot start hash worker: .*pass workerUrl/,
  );
});
