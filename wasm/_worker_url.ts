/**
 * Where a {@link HashPool} finds its worker entry module, which depends on how Atoll was
 * built: from source, `deno compile`, or `deno bundle`.
 *
 * @module
 */

/**
 * Returns the worker entry: `besideUrl` (hash_worker.ts next to the pool) when that file
 * can be read, which holds running from source and inside `deno compile` output built with
 * `--include wasm/hash_worker.ts`; otherwise `mainModule`, which in a `deno bundle` output
 * is the bundle itself, whose main module calls serveHashJobs() when it runs as a worker.
 *
 * Read permission is queried rather than requested, so this never prompts; without it the
 * main module is used, which works from source too.
 */
export function resolveWorkerUrl(besideUrl: URL, mainModule: string | undefined): URL | string {
  if (besideUrl.protocol === "file:" && canRead(besideUrl)) {
    try {
      Deno.statSync(besideUrl);
      return besideUrl;
    } catch {
      // Not beside the pool: this is a bundle.
    }
  }
  // Inside a worker Deno.mainModule is undefined, so a pool there needs a workerUrl.
  if (mainModule === undefined) {
    throw new Error(
      `Cannot start hash worker: ${besideUrl.href} is missing and there is no main module; pass workerUrl`,
    );
  }
  return mainModule;
}

/** True when read permission for `url` is already granted. */
function canRead(url: URL): boolean {
  try {
    return Deno.permissions.querySync({ name: "read", path: url }).state === "granted";
  } catch {
    return false;
  }
}
