/**
 * `backup push`: copies a snapshot to an S3 target, sending only the blocks the
 * target lacks. The backup's map is the snapshot's with every entry a content
 * block: entries that are the volume's own objects are read and stored by the
 * SHA-256 of their bytes (all-zero ones become zero entries). Its pages are
 * content blocks too, so an unchanged part of a map is not sent again either.
 *
 * Order of writes, which makes a push resumable and safe beside a prune:
 * for each run of `pendingEntriesMax` entries, (1) a pending manifest naming
 * their hashes, (2) a wait while a prune runs, (3) a HEAD of each hash not yet
 * seen, (4) a PUT of each missing one, its SHA-256 checked by the store; then
 * the same for the map's pages; the manifest last. A push killed anywhere
 * leaves only whole blocks, and the next one skips them.
 */
import {
  BlockMap,
  ConflictError,
  encodeMapRoot,
  type FrozenView,
  type Store,
} from "../core/mod.ts";
import { toHex } from "../wasm/to_hex.ts";
import {
  encodeJson,
  keys,
  type Manifest,
  parseManifest,
  type PendingPart,
  type Target,
  validateBackupName,
} from "./layout.ts";
import { pendingEntriesMax, pushDurationMsMax, runsInFlightMax, transfersMax } from "./limits.ts";
import { eachLimit, isAllZero, sha256Hex } from "./_parallel.ts";
import { waitForPrunes } from "./_prune_markers.ts";
import type { S3Bucket } from "./s3_client.ts";

/** Counters of one push or restore, updated as it runs (the progress an operator sees). */
export interface TransferProgress {
  /** Non-zero map entries, and the bytes they span. */
  totalBlocks: number;
  totalBytes: number;
  /** Entries handled so far (sent or found present), and their bytes. */
  doneBlocks: number;
  doneBytes: number;
  /** Blocks (data and map pages) this run sent, and their bytes. */
  sentBlocks: number;
  sentBytes: number;
  /** Times this push waited for a prune to end. */
  prunePauses: number;
}

/** What {@linkcode pushBackup} needs. */
export interface PushOptions {
  store: Store;
  bucket: S3Bucket;
  target: Target;
  volume: string;
  snapshot: string;
  /** Backup name; `VOLUME@SNAPSHOT` by default. */
  name?: string;
  /** Called after each run of entries. */
  onProgress?: (progress: TransferProgress) => void;
  /** Stops the push between two transfers (the client went away). */
  signal?: AbortSignal;
}

/** What a push did. */
export interface PushResult extends TransferProgress {
  manifest: Manifest;
  /** False when the backup existed already (same snapshot): nothing was sent. */
  created: boolean;
}

/** Pushes `volume@snapshot` to the target; see the module comment for the order of writes. */
export async function pushBackup(options: PushOptions): Promise<PushResult> {
  const { store, bucket, target, volume, snapshot } = options;
  const name = validateBackupName(options.name ?? `${volume}@${snapshot}`);
  const view = await store.openSnapshot(volume, snapshot);
  const info = (await store.listSnapshots(volume)).find((s) => s.name === snapshot);
  const snapshotCreatedAt = info?.createdAt ?? "";
  const progress = newProgress(view.map);
  const existing = await existingManifest(bucket, target, name);
  if (existing !== null) {
    if (
      existing.volume === volume && existing.snapshot === snapshot &&
      existing.snapshotCreatedAt === snapshotCreatedAt
    ) {
      return { ...progress, manifest: existing, created: false };
    }
    throw new ConflictError(
      `Cannot push backup "${name}": it exists, of ${existing.volume}@${existing.snapshot} ` +
        `taken ${existing.snapshotCreatedAt}`,
    );
  }
  const run = new PushRun(options, progress);
  const map = await run.sendEntries(view);
  await run.sendPages(map);
  run.checkDuration(name);
  const manifest: Manifest = {
    format: "atoll-backup/1",
    name,
    volume,
    snapshot,
    snapshotCreatedAt,
    push: run.id,
    createdAt: new Date().toISOString(),
    sizeBytes: map.sizeBytes,
    blockSize: map.blockSize,
    root: toHex(encodeMapRoot(map)),
    dataBlocks: map.allocated,
    dataBytes: dataBytesOf(map),
  };
  await bucket.put(keys.manifest(target, name), encodeJson(manifest));
  await run.dropPending();
  return { ...progress, manifest, created: true };
}

/** The manifest named `name`, or null. */
async function existingManifest(bucket: S3Bucket, target: Target, name: string) {
  const key = keys.manifest(target, name);
  const bytes = await bucket.get(key);
  return bytes === null ? null : parseManifest(bytes, key);
}

/** Bytes the non-zero entries of `map` span. */
function dataBytesOf(map: BlockMap): number {
  let bytes = 0;
  for (let index = 0; index < map.count; index++) {
    if (!map.isZero(index)) bytes += map.spanBytes(index);
  }
  return bytes;
}

function newProgress(map: BlockMap): TransferProgress {
  return {
    totalBlocks: map.allocated,
    totalBytes: dataBytesOf(map),
    doneBlocks: 0,
    doneBytes: 0,
    sentBlocks: 0,
    sentBytes: 0,
    prunePauses: 0,
  };
}

/** The non-zero entries of `map`, in runs of `pendingEntriesMax`. */
function* runsOf(map: BlockMap): Iterable<number[]> {
  let run: number[] = [];
  for (let index = 0; index < map.count; index++) {
    if (map.isZero(index)) continue;
    run.push(index);
    if (run.length === pendingEntriesMax) {
      yield run;
      run = [];
    }
  }
  if (run.length > 0) yield run;
}

/** One push's state: its id, its pending manifests, the hashes it knows present. */
class PushRun {
  readonly id = crypto.randomUUID();
  #options: PushOptions;
  #progress: TransferProgress;
  #parts = 0;
  #startedMs = performance.now();
  /** Hashes named by this push's pending manifests and found (or put) in the store. */
  #present = new Set<string>();

  constructor(options: PushOptions, progress: TransferProgress) {
    this.#options = options;
    this.#progress = progress;
  }

  /**
   * Sends the snapshot's non-zero entries, `runsInFlightMax` runs of
   * `pendingEntriesMax` at once (one reads and hashes while another sends);
   * returns the backup's map (all content blocks).
   */
  async sendEntries(view: FrozenView): Promise<BlockMap> {
    const source = view.map;
    const map = new BlockMap({ sizeBytes: source.sizeBytes, blockSize: source.blockSize });
    await eachLimit(runsOf(source), runsInFlightMax, (run) => this.#sendRun(view, run, map));
    return map;
  }

  /** Sends the pages of the backup's map not in the store. */
  async sendPages(map: BlockMap): Promise<void> {
    const pages = new Map(map.unstored().map((page) => [page.id, page.bytes!]));
    await this.#announce([...pages.keys()]);
    await this.#sendMissing([...pages.keys()], (hash) => Promise.resolve(pages.get(hash)!));
    for (const page of map.unstored()) page.bytes = null;
  }

  /** Throws when the push ran so long that a prune may have dropped its pending manifests. */
  checkDuration(name: string): void {
    const elapsedMs = performance.now() - this.#startedMs;
    if (elapsedMs > pushDurationMsMax) {
      throw new Error(
        `Cannot finish backup "${name}": the push ran ${Math.round(elapsedMs / 1000)} s, ` +
          `over ${pushDurationMsMax / 1000} s; run it again to resume`,
      );
    }
  }

  /**
   * Removes this push's pending manifests, once its manifest is written (which
   * protects the same blocks from then on). Left behind by a push killed just
   * before, they are removed by the next prune that sees the manifest.
   */
  async dropPending(): Promise<void> {
    const { bucket, target } = this.#options;
    const parts = Array.from(
      { length: this.#parts },
      (_, part) => keys.pending(target, this.id, part),
    );
    await eachLimit(parts, transfersMax, (key) => bucket.delete(key));
  }

  async #sendRun(view: FrozenView, indexes: number[], map: BlockMap): Promise<void> {
    const source = view.map;
    const hashes = new Map<number, string>();
    // The bytes of the volume's own objects, read to hash them, are kept to send.
    const read = new Map<string, Uint8Array>();
    await eachLimit(indexes, transfersMax, async (index) => {
      const entry = source.get(index);
      if (entry.kind === "block") return void hashes.set(index, entry.hash);
      const bytes = await this.#read(view, index);
      if (isAllZero(bytes)) return;
      const hash = await sha256Hex(bytes);
      hashes.set(index, hash);
      read.set(hash, bytes);
    });
    for (const [index, hash] of hashes) map.set(index, { kind: "block", hash });
    await this.#announce([...hashes.values()]);
    const indexOf = new Map([...hashes].map(([index, hash]) => [hash, index]));
    await this.#sendMissing(
      [...indexOf.keys()],
      async (hash) => read.get(hash) ?? await this.#read(view, indexOf.get(hash)!),
    );
    for (const index of indexes) {
      this.#progress.doneBlocks++;
      this.#progress.doneBytes += source.spanBytes(index);
    }
    this.#options.onProgress?.({ ...this.#progress });
  }

  /** Writes a pending manifest naming `hashes`, then waits while a prune runs. */
  async #announce(hashes: string[]): Promise<void> {
    const { bucket, target, name, volume, snapshot } = this.#options;
    const part: PendingPart = {
      push: this.id,
      backup: name ?? `${volume}@${snapshot}`,
      hashes: [...new Set(hashes)],
    };
    await bucket.put(keys.pending(target, this.id, this.#parts++), encodeJson(part));
    await waitForPrunes(bucket, target, () => this.#progress.prunePauses++);
  }

  /** HEADs each hash not known present and PUTs the missing ones (bytes from `read`). */
  async #sendMissing(hashes: string[], read: (hash: string) => Promise<Uint8Array>) {
    const { bucket, target, signal } = this.#options;
    await eachLimit(new Set(hashes), transfersMax, async (hash) => {
      signal?.throwIfAborted();
      if (this.#present.has(hash)) return;
      const key = keys.block(target, hash);
      if (await bucket.head(key) === null) {
        const bytes = await read(hash);
        await bucket.put(key, bytes, { sha256: hash });
        this.#progress.sentBlocks++;
        this.#progress.sentBytes += bytes.length;
      }
      this.#present.add(hash);
    });
  }

  async #read(view: FrozenView, index: number): Promise<Uint8Array> {
    const { blockSize } = view.map;
    return await view.readAt({ offset: index * blockSize, length: view.map.spanBytes(index) });
  }
}
