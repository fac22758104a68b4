/**
 * How pushes and prunes keep out of each other's way (docs/decisions.md,
 * "Backups to S3: prune against a running push" has the argument):
 *
 * - a prune writes a marker before it lists anything, rewrites it every
 *   `pruneHeartbeatMs`, and sends no DELETE once its last rewrite could be
 *   `pruneMarkerAgeMsMax` old by the time the DELETE lands;
 * - a push, after writing each pending manifest and before it looks for the
 *   blocks that manifest names, waits while any marker is younger than
 *   `pruneMarkerAgeMsMax` by the store's clock.
 */
import { BusyError } from "../core/mod.ts";
import { encodeJson, keys, type Target } from "./layout.ts";
import {
  pruneHeartbeatMs,
  pruneMarkerAgeMsMax,
  pruneWaitMsMax,
  pruneWaitPollMs,
  s3RequestTimeoutMs,
} from "./limits.ts";
import type { S3Bucket } from "./s3_client.ts";

/** Slack for the store's clock, which counts whole seconds in `Date` and `Last-Modified`. */
const clockSlackMs = 2_000;

/** True when a prune is running on `target` (its marker is fresh by the store's clock). */
export async function pruneRunning(bucket: S3Bucket, target: Target): Promise<boolean> {
  const markers = [];
  for await (const marker of bucket.list(keys.prunes(target))) markers.push(marker);
  if (markers.length === 0) return false;
  const now = await bucket.now();
  return markers.some((marker) => now - marker.lastModifiedMs < pruneMarkerAgeMsMax + clockSlackMs);
}

/** Waits until no prune runs on `target`; throws BusyError after `pruneWaitMsMax`. */
export async function waitForPrunes(
  bucket: S3Bucket,
  target: Target,
  onWait: () => void = () => {},
): Promise<void> {
  const started = performance.now();
  while (await pruneRunning(bucket, target)) {
    if (performance.now() - started > pruneWaitMsMax) {
      throw new BusyError(
        `Cannot push to s3://${bucket.bucket}/${target.prefix}: a prune has run ` +
          `for over ${pruneWaitMsMax / 1000} s`,
      );
    }
    onWait();
    await new Promise((resolve) => setTimeout(resolve, pruneWaitPollMs));
  }
}

/** A running prune's marker: written at start, kept fresh, removed at the end. */
export class PruneMarker {
  readonly id = crypto.randomUUID();
  #bucket: S3Bucket;
  #key: string;
  /** Monotonic time at which the last successful rewrite was sent. */
  #beatSentMs = -Infinity;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(bucket: S3Bucket, target: Target) {
    this.#bucket = bucket;
    this.#key = keys.prune(target, this.id);
  }

  /** Writes the marker and starts rewriting it. */
  async start(): Promise<void> {
    await this.#beat();
    this.#timer = setInterval(() => this.#beat().catch(() => {}), pruneHeartbeatMs);
  }

  /**
   * Throws unless a DELETE sent now lands while the marker is still fresh:
   * within `s3RequestTimeoutMs`, before the last rewrite is `pruneMarkerAgeMsMax` old.
   */
  checkFresh(): void {
    const ageMs = performance.now() - this.#beatSentMs;
    if (ageMs + s3RequestTimeoutMs + clockSlackMs >= pruneMarkerAgeMsMax) {
      throw new Error(
        `Cannot go on pruning: the prune marker was last written ${Math.round(ageMs)} ms ago`,
      );
    }
  }

  /** Stops rewriting and removes the marker. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#bucket.delete(this.#key);
  }

  async #beat(): Promise<void> {
    const sentMs = performance.now();
    await this.#bucket.put(this.#key, encodeJson({ prune: this.id, at: new Date().toISOString() }));
    this.#beatSentMs = Math.max(this.#beatSentMs, sentMs);
  }
}
