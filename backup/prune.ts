/**
 * `backup prune`: removes backups (by name, or all but the newest few of each
 * volume), then the blocks that no remaining backup and no live push
 * references. Safe beside running pushes (docs/decisions.md, "Backups to S3:
 * prune against a running push"): a marker makes pushes wait before they
 * trust a block they find, pending manifests younger than `pendingAgeMsMax`
 * are honoured, and a block written after the listing began is never deleted.
 */
import { loadMap } from "../core/mod.ts";
import {
  keys,
  type Manifest,
  manifestRoot,
  parsePendingPart,
  type Target,
  validateBackupName,
} from "./layout.ts";
import { pendingAgeMsMax, transfersMax } from "./limits.ts";
import { eachLimit } from "./_parallel.ts";
import { PruneMarker } from "./_prune_markers.ts";
import { listBackups, targetPages } from "./restore.ts";
import type { S3Bucket, S3Object } from "./s3_client.ts";

/** Which backups {@linkcode pruneBackups} removes before it collects blocks. */
export interface PrunePolicy {
  /** These backups. */
  remove?: string[];
  /** All but the newest `keepLast` backups of each volume. */
  keepLast?: number;
}

/** What a prune did. */
export interface PruneResult {
  removedBackups: string[];
  keptBackups: number;
  deletedBlocks: number;
  deletedBytes: number;
  keptBlocks: number;
  /** Blocks unreferenced but written after the prune began listing (a push's, kept). */
  youngBlocks: number;
  removedPending: number;
}

/** Slack for the store's clock, which counts whole seconds in `Last-Modified` and `Date`. */
const clockSlackMs = 2_000;

/** Prunes `target` by `policy`; see the module comment. */
export async function pruneBackups(
  bucket: S3Bucket,
  target: Target,
  policy: PrunePolicy,
): Promise<PruneResult> {
  const remove = (policy.remove ?? []).map(validateBackupName);
  if (
    policy.keepLast !== undefined &&
    !(Number.isSafeInteger(policy.keepLast) && policy.keepLast >= 1)
  ) {
    throw new RangeError(`Cannot prune: keepLast must be a whole number of at least 1`);
  }
  const marker = new PruneMarker(bucket, target);
  await marker.start();
  try {
    const removedBackups = await removeBackups(bucket, target, remove, policy.keepLast);
    // Blocks written after this instant are never deleted: a push may rely on them.
    const listedAtMs = await bucket.now() - clockSlackMs;
    const blocks: S3Object[] = [];
    for await (const block of bucket.list(keys.blocks(target))) blocks.push(block);
    // Pending manifests first, backups second: a push's pending manifests stay
    // until a prune has seen its finished manifest.
    const { marked, finishedPushes, stale } = await markPending(bucket, target);
    const backups = await listBackups(bucket, target);
    for (const backup of backups) {
      for (const hash of await referencedBlocks(bucket, target, backup)) marked.add(hash);
      finishedPushes.add(backup.push);
    }
    const result: PruneResult = {
      removedBackups,
      keptBackups: backups.length,
      deletedBlocks: 0,
      deletedBytes: 0,
      keptBlocks: 0,
      youngBlocks: 0,
      removedPending: 0,
    };
    const garbage = blocks.filter((block) => {
      const hash = block.key.slice(keys.blocks(target).length);
      if (marked.has(hash)) return void result.keptBlocks++;
      if (block.lastModifiedMs >= listedAtMs) return void result.youngBlocks++;
      return true;
    });
    await eachLimit(garbage, transfersMax, async (block) => {
      marker.checkFresh();
      await bucket.delete(block.key);
      result.deletedBlocks++;
      result.deletedBytes += block.sizeBytes;
    });
    const done = [...stale, ...(await pendingOf(bucket, target, finishedPushes))];
    await eachLimit(new Set(done), transfersMax, async (key) => {
      await bucket.delete(key);
      result.removedPending++;
    });
    return result;
  } finally {
    await marker.stop();
  }
}

/** Deletes the manifests the policy names; returns their names. */
async function removeBackups(
  bucket: S3Bucket,
  target: Target,
  remove: string[],
  keepLast: number | undefined,
): Promise<string[]> {
  const backups = await listBackups(bucket, target);
  const doomed = new Set(remove.filter((name) => backups.some((b) => b.name === name)));
  if (keepLast !== undefined) {
    const byVolume = Map.groupBy(backups, (backup) => backup.volume);
    for (const list of byVolume.values()) {
      for (const backup of list.slice(0, -keepLast)) doomed.add(backup.name);
    }
  }
  for (const name of doomed) await bucket.delete(keys.manifest(target, name));
  return [...doomed].sort();
}

/** Hashes named by live pending manifests; keys of stale ones; pushes seen. */
async function markPending(bucket: S3Bucket, target: Target) {
  const marked = new Set<string>();
  const stale: string[] = [];
  const finishedPushes = new Set<string>();
  const now = await bucket.now();
  const parts: S3Object[] = [];
  for await (const part of bucket.list(keys.pendings(target))) parts.push(part);
  await eachLimit(parts, transfersMax, async (part) => {
    if (now - part.lastModifiedMs > pendingAgeMsMax) return void stale.push(part.key);
    const bytes = await bucket.get(part.key);
    if (bytes === null) return; // removed by another prune, once its backup was finished
    for (const hash of parsePendingPart(bytes, part.key).hashes) marked.add(hash);
  });
  return { marked, finishedPushes, stale };
}

/** Keys of the pending manifests of `pushes` (finished: their manifests protect their blocks). */
async function pendingOf(bucket: S3Bucket, target: Target, pushes: Set<string>) {
  const found: string[] = [];
  for await (const part of bucket.list(keys.pendings(target))) {
    const push = part.key.slice(keys.pendings(target).length).split("/")[0];
    if (pushes.has(push)) found.push(part.key);
  }
  return found;
}

/** Every block a backup references: its map's pages and its data blocks. */
async function referencedBlocks(bucket: S3Bucket, target: Target, backup: Manifest) {
  const map = await loadMap(manifestRoot(backup), targetPages(bucket, target));
  return map.references().blocks;
}
