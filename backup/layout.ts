/**
 * Where a backup target keeps things, and what its small JSON objects hold.
 * Under `s3://BUCKET/PREFIX`:
 *
 * - `blocks/HASH`: content blocks, data and map pages alike, named by the
 *   SHA-256 of their bytes; written whole, never changed.
 * - `backups/NAME.json`: a backup's manifest (the root of its map, written last).
 * - `pending/PUSH/NNNNNN.json`: what a push will reference, written before it
 *   looks for those blocks in the store (prune keeps them).
 * - `prunes/PRUNE.json`: the marker of a running prune (pushes wait while one is live).
 */
import { isValidName, mapRootBytes } from "../core/mod.ts";
import { fromHex } from "../wasm/to_hex.ts";
import { manifestBytesMax } from "./limits.ts";

/** A backup target: a bucket and a key prefix (no leading or trailing slash). */
export interface Target {
  bucket: string;
  prefix: string;
}

const bucketPattern = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const segmentPattern = /^[A-Za-z0-9._=+-][A-Za-z0-9._=+@-]{0,254}$/;
const backupNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(@[A-Za-z0-9][A-Za-z0-9._-]{0,127})?$/;
const hashPattern = /^[0-9a-f]{64}$/;

/**
 * `s3://BUCKET/PREFIX` as a target; throws TypeError naming what is wrong.
 *
 * @example
 * ```ts
 * parseTarget("s3://backups/atoll/site-a"); // { bucket: "backups", prefix: "atoll/site-a" }
 * ```
 */
export function parseTarget(url: unknown): Target {
  const shown = JSON.stringify(url);
  if (typeof url !== "string" || !url.startsWith("s3://")) {
    throw new TypeError(`Cannot use backup target ${shown}: expected s3://BUCKET/PREFIX`);
  }
  const [bucket, ...segments] = url.slice("s3://".length).replace(/\/+$/, "").split("/");
  if (!bucketPattern.test(bucket)) {
    throw new TypeError(`Cannot use backup target ${shown}: "${bucket}" is not a bucket name`);
  }
  const bad = segments.find((segment) => !segmentPattern.test(segment) || /^\.+$/.test(segment));
  if (bad !== undefined) {
    throw new TypeError(`Cannot use backup target ${shown}: "${bad}" is not a prefix segment`);
  }
  return { bucket, prefix: segments.join("/") };
}

/** `s3://BUCKET/PREFIX/NAME` as its target and backup name. */
export function parseBackupUrl(url: unknown): { target: Target; name: string } {
  if (typeof url !== "string" || !url.includes("/", "s3://".length)) {
    throw new TypeError(
      `Cannot use backup ${JSON.stringify(url)}: expected s3://BUCKET/PREFIX/BACKUP`,
    );
  }
  const cut = url.replace(/\/+$/, "").lastIndexOf("/");
  return { target: parseTarget(url.slice(0, cut)), name: validateBackupName(url.slice(cut + 1)) };
}

/** A backup name: a name, or `VOLUME@SNAPSHOT` (the default). */
export function validateBackupName(name: unknown): string {
  if (typeof name !== "string" || !backupNamePattern.test(name)) {
    throw new TypeError(
      `Cannot use backup name ${JSON.stringify(name)}: expected NAME or NAME@NAME, names ` +
        `of [A-Za-z0-9._-] starting with a letter or digit`,
    );
  }
  return name;
}

/** The keys of a target. */
export const keys = {
  root: (target: Target) => target.prefix === "" ? "" : `${target.prefix}/`,
  blocks: (target: Target) => `${keys.root(target)}blocks/`,
  block: (target: Target, hash: string) => `${keys.blocks(target)}${hash}`,
  backups: (target: Target) => `${keys.root(target)}backups/`,
  manifest: (target: Target, name: string) => `${keys.backups(target)}${name}.json`,
  pendings: (target: Target) => `${keys.root(target)}pending/`,
  pending: (target: Target, push: string, part: number) =>
    `${keys.pendings(target)}${push}/${String(part).padStart(6, "0")}.json`,
  prunes: (target: Target) => `${keys.root(target)}prunes/`,
  prune: (target: Target, prune: string) => `${keys.prunes(target)}${prune}.json`,
};

/** A finished backup: what `backups/NAME.json` holds. */
export interface Manifest {
  format: "atoll-backup/1";
  name: string;
  volume: string;
  snapshot: string;
  /** When the snapshot was taken, as the node recorded it. */
  snapshotCreatedAt: string;
  /** The push that wrote it (its pending manifests carry the same id). */
  push: string;
  createdAt: string;
  sizeBytes: number;
  blockSize: number;
  /** Hex of the map's root (map_store.ts): its shape and top page. */
  root: string;
  /** Non-zero map entries, and the bytes they span. */
  dataBlocks: number;
  dataBytes: number;
}

/** What a pending manifest holds: hashes a push is about to reference. */
export interface PendingPart {
  push: string;
  backup: string;
  hashes: string[];
}

/** Parses a manifest, checking every field a reader relies on. */
export function parseManifest(bytes: Uint8Array, key: string): Manifest {
  const value = parseJson(bytes, key) as Partial<Manifest>;
  const ok = value.format === "atoll-backup/1" &&
    typeof value.name === "string" && backupNamePattern.test(value.name) &&
    typeof value.volume === "string" && isValidName(value.volume) &&
    typeof value.snapshot === "string" && isValidName(value.snapshot) &&
    typeof value.push === "string" && typeof value.createdAt === "string" &&
    typeof value.snapshotCreatedAt === "string" &&
    Number.isSafeInteger(value.sizeBytes) && Number.isSafeInteger(value.blockSize) &&
    Number.isSafeInteger(value.dataBlocks) && Number.isSafeInteger(value.dataBytes) &&
    typeof value.root === "string" &&
    new RegExp(`^[0-9a-f]{${mapRootBytes * 2}}$`).test(value.root);
  if (!ok) throw new TypeError(`Cannot read backup manifest ${key}: a field is missing or wrong`);
  return value as Manifest;
}

/** The bytes of a manifest's map root. */
export function manifestRoot(manifest: Manifest): Uint8Array {
  const bytes = new Uint8Array(mapRootBytes);
  fromHex(manifest.root, bytes);
  return bytes;
}

/** Parses a pending manifest. */
export function parsePendingPart(bytes: Uint8Array, key: string): PendingPart {
  const value = parseJson(bytes, key) as Partial<PendingPart>;
  if (
    typeof value.push !== "string" || typeof value.backup !== "string" ||
    !Array.isArray(value.hashes) || !value.hashes.every((hash) => hashPattern.test(hash))
  ) throw new TypeError(`Cannot read pending manifest ${key}: a field is missing or wrong`);
  return value as PendingPart;
}

/** JSON bytes of a manifest or pending manifest. */
export function encodeJson(value: Manifest | PendingPart | Record<string, unknown>): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value, null, 1));
}

function parseJson(bytes: Uint8Array, key: string): unknown {
  if (bytes.length > manifestBytesMax) {
    throw new RangeError(`Cannot read ${key}: ${bytes.length} bytes, over ${manifestBytesMax}`);
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new TypeError(`Cannot read ${key}: not JSON`, { cause: error });
  }
}
