/**
 * `backup restore` and `backup ls`: a backup's map is read from the target
 * (its pages are checked against their names as they load), each block is
 * fetched and checked against its SHA-256 and length, and the bytes go through
 * the node's ordinary image upload, so the restored image is deduplicated like
 * any other and becomes visible only once whole.
 */
import {
  CorruptionError,
  type ImageInfo,
  loadMap,
  NotFoundError,
  type PageSource,
  type Store,
} from "../core/mod.ts";
import { keys, type Manifest, manifestRoot, parseManifest, type Target } from "./layout.ts";
import { transfersMax } from "./limits.ts";
import { sha256Hex } from "./_parallel.ts";
import type { TransferProgress } from "./push.ts";
import type { S3Bucket } from "./s3_client.ts";

/** Every backup of a target, oldest first. */
export async function listBackups(bucket: S3Bucket, target: Target): Promise<Manifest[]> {
  const manifests: Manifest[] = [];
  for await (const object of bucket.list(keys.backups(target))) {
    if (!object.key.endsWith(".json")) continue;
    const bytes = await bucket.get(object.key);
    if (bytes !== null) manifests.push(parseManifest(bytes, object.key));
  }
  return manifests.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** The manifest of backup `name`; NotFoundError when there is none. */
export async function readManifest(
  bucket: S3Bucket,
  target: Target,
  name: string,
): Promise<Manifest> {
  const key = keys.manifest(target, name);
  const bytes = await bucket.get(key);
  if (bytes === null) {
    throw new NotFoundError(
      `Cannot find backup "${name}" in s3://${bucket.bucket}/${target.prefix}`,
    );
  }
  return parseManifest(bytes, key);
}

/** Map pages read from the target's blocks. */
export function targetPages(bucket: S3Bucket, target: Target): PageSource {
  return {
    async load(id, length) {
      const bytes = await bucket.get(keys.block(target, id));
      if (bytes === null) throw new CorruptionError(`Cannot load map page ${id}: it is missing`);
      if (bytes.length !== length) {
        throw new CorruptionError(
          `Cannot load map page ${id}: ${bytes.length} bytes, not ${length}`,
        );
      }
      return bytes;
    },
  };
}

/** What {@linkcode restoreBackup} needs. */
export interface RestoreOptions {
  store: Store;
  bucket: S3Bucket;
  target: Target;
  backup: string;
  image: string;
  onProgress?: (progress: TransferProgress) => void;
  signal?: AbortSignal;
}

/** Makes image `image` of backup `backup`, every block checked against its hash. */
export async function restoreBackup(options: RestoreOptions): Promise<ImageInfo> {
  const { store, bucket, target, backup, image } = options;
  const manifest = await readManifest(bucket, target, backup);
  const map = await loadMap(manifestRoot(manifest), targetPages(bucket, target));
  if (map.sizeBytes !== manifest.sizeBytes || map.blockSize !== manifest.blockSize) {
    throw new CorruptionError(`Cannot restore backup "${backup}": its map and manifest disagree`);
  }
  const progress: TransferProgress = {
    totalBlocks: map.allocated,
    totalBytes: manifest.dataBytes,
    doneBlocks: 0,
    doneBytes: 0,
    sentBlocks: 0,
    sentBytes: 0,
    prunePauses: 0,
  };
  const fetchBlock = async (index: number): Promise<Uint8Array> => {
    options.signal?.throwIfAborted();
    const entry = map.get(index);
    if (entry.kind !== "block") return zeros(map.spanBytes(index));
    const bytes = await bucket.get(keys.block(target, entry.hash));
    if (bytes === null) {
      throw new CorruptionError(
        `Cannot restore backup "${backup}": block ${entry.hash} is missing`,
      );
    }
    if (bytes.length !== map.spanBytes(index) || await sha256Hex(bytes) !== entry.hash) {
      throw new CorruptionError(
        `Cannot restore backup "${backup}": block ${entry.hash} (entry ${index}) does not match its hash`,
      );
    }
    progress.doneBlocks++;
    progress.doneBytes += bytes.length;
    progress.sentBlocks++;
    progress.sentBytes += bytes.length;
    options.onProgress?.({ ...progress });
    return bytes;
  };
  const result = await store.uploadImage(image, prefetched(map.count, fetchBlock), {
    expectedBytes: map.sizeBytes,
    format: "raw",
  });
  const { created: _, newBlocks: _n, newBytes: _b, ...info } = result;
  return info;
}

/** Yields `fetch(0)`, `fetch(1)`, ... in order, with up to `transfersMax` fetches ahead. */
async function* prefetched(
  count: number,
  fetch: (index: number) => Promise<Uint8Array>,
): AsyncIterable<Uint8Array> {
  const ahead: Promise<Uint8Array>[] = [];
  let next = 0;
  try {
    for (let index = 0; index < count; index++) {
      while (next < count && ahead.length < transfersMax) ahead.push(fetch(next++));
      yield await ahead.shift()!;
    }
  } finally {
    // A failed or abandoned restore leaves no rejection unobserved.
    for (const pending of ahead) pending.catch(() => {});
  }
}

let zeroBuffer = new Uint8Array(0);

/** A shared buffer of `length` zeros (read-only by convention: the upload only reads it). */
function zeros(length: number): Uint8Array {
  if (zeroBuffer.length < length) zeroBuffer = new Uint8Array(length);
  return zeroBuffer.subarray(0, length);
}
