/**
 * The routes of backups to S3, under /v1. The node does the work with the S3
 * credentials of its own environment (backup/credentials.ts), read at each
 * request.
 *
 * A push or restore answers once done (`201` with its result); asked with
 * `Accept: application/x-ndjson`, it answers `200` at once and streams one
 * JSON line per step, `{"started": TIME}`, `{"progress": {...}}`..., then `{"result": {...}}` or
 * `{"error": "...", "status": N}`. A client that goes away stops the work
 * between two transfers (run again, a push resumes).
 */
import { Hono } from "hono";
import {
  listBackups,
  parseBackupUrl,
  parseTarget,
  pruneBackups,
  pushBackup,
  restoreBackup,
  S3Bucket,
  s3ConfigFromEnvironment,
  type Target,
  type TransferProgress,
} from "../backup/mod.ts";
import { parseSnapshotRef, type Store, validateName } from "../core/mod.ts";
import type { AppEnv } from "./app.ts";
import { jsonBody } from "./_request_body.ts";

/** Shortest time between two progress lines of one stream. */
const progressIntervalMs = 250;

/** What a streamed step runs: its work reports progress and stops on `signal`. */
type Work = (
  onProgress: (progress: TransferProgress) => void,
  signal: AbortSignal,
) => Promise<unknown>;

/**
 * Backup routes over `store`; `statusOf` is the app's mapping from errors to
 * statuses (a streamed answer reports the status in its last line).
 */
export function backupRoutes(store: Store, statusOf: (error: Error) => number): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const bucketOf = (target: Target) =>
    new S3Bucket(s3ConfigFromEnvironment(Deno.env.toObject()), target.bucket);
  const run = (accept: string | undefined, work: Work) =>
    accept?.includes("application/x-ndjson")
      ? streamed(work, statusOf)
      : work(() => {}, new AbortController().signal).then((result) =>
        Response.json(result, { status: 201 })
      );

  app.post("/backups", async (c) => {
    const request = await jsonBody(c.req.raw);
    const { volume, snapshot } = parseSnapshotRef(request.snapshot);
    const target = parseTarget(request.target);
    const name = request.name === undefined ? undefined : String(request.name);
    const bucket = bucketOf(target);
    return await run(
      c.req.header("accept"),
      (onProgress, signal) =>
        pushBackup({ store, bucket, target, volume, snapshot, name, onProgress, signal })
          .then(({ manifest, created, ...counts }) => ({ ...manifest, created, ...counts })),
    );
  });
  app.get("/backups", async (c) => {
    const target = parseTarget(c.req.query("target"));
    return c.json(await listBackups(bucketOf(target), target));
  });
  app.post("/backups/restore", async (c) => {
    const request = await jsonBody(c.req.raw);
    const { target, name: backup } = parseBackupUrl(request.backup);
    const image = validateName(request.image, "image");
    const bucket = bucketOf(target);
    return await run(
      c.req.header("accept"),
      (onProgress, signal) =>
        restoreBackup({ store, bucket, target, backup, image, onProgress, signal }),
    );
  });
  app.post("/backups/prune", async (c) => {
    const request = await jsonBody(c.req.raw);
    const target = parseTarget(request.target);
    const remove = request.remove ?? [];
    if (!Array.isArray(remove)) throw new TypeError("Cannot prune: remove must be a list of names");
    const keepLast = request.keepLast === undefined ? undefined : Number(request.keepLast);
    return c.json(await pruneBackups(bucketOf(target), target, { remove, keepLast }));
  });
  return app;
}

/** Runs `work`, streaming its progress as JSON lines (see the module comment). */
function streamed(work: Work, statusOf: (error: Error) => number): Response {
  const abort = new AbortController();
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const send = (value: unknown) => {
        if (!abort.signal.aborted) controller.enqueue(encoder.encode(JSON.stringify(value) + "\n"));
      };
      // The server sends a one-chunk body with its length, so it waits for a
      // second chunk before the head: an empty one lets the head and the first
      // line go now, and the client sees at once that the work started.
      send({ started: new Date().toISOString() });
      controller.enqueue(new Uint8Array(0));
      let lastMs = -Infinity;
      const onProgress = (progress: TransferProgress) => {
        if (performance.now() - lastMs < progressIntervalMs) return;
        lastMs = performance.now();
        send({ progress });
      };
      work(onProgress, abort.signal)
        .then((result) => send({ result }))
        .catch((error: Error) => send({ error: error.message, status: statusOf(error) }))
        .finally(() => {
          if (!abort.signal.aborted) controller.close();
        });
    },
    cancel() {
      abort.abort(new Error("the client went away"));
    },
  });
  return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
}
