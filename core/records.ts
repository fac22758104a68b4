/**
 * Records stored in metadata: a JSON header describing an image, volume or
 * snapshot, followed by its map's root (map_store.ts: the pages it names are
 * content blocks). Keys: `image/NAME`, `volume/NAME`, `snapshot/VOLUME@SNAPSHOT`.
 */
import type { BlockMap } from "./block_map.ts";
import type { Engine } from "./engine.ts";
import { CorruptionError } from "./errors.ts";
import { recordBytesMax } from "./limits.ts";
import { encodeMapRoot, enginePages, isLegacyMap, loadMap, storeMapPages } from "./map_store.ts";
import type { PagePins } from "./_page_pins.ts";

/** Where a clone came from: an image or a snapshot. */
export type CloneOrigin =
  | { kind: "image"; image: string }
  | { kind: "snapshot"; volume: string; snapshot: string };

/** Where a volume came from ("flattened": a clone that no longer depends on it, _lifecycle.ts). */
export type VolumeOrigin =
  | { kind: "empty" }
  | CloneOrigin
  | { kind: "flattened"; from: CloneOrigin };

/** Header of an image record. */
export interface ImageHeader {
  name: string;
  createdAt: string;
}

/** Header of a volume record. */
export interface VolumeHeader {
  name: string;
  /** 32 hex digits, fixed for the life of the volume; names its objects. */
  uid: string;
  /** Objects of this generation belong to the volume; a snapshot bumps it. */
  generation: number;
  createdAt: string;
  origin: VolumeOrigin;
  /**
   * The write lease, in a cluster: the node that may write the volume, and the
   * epoch its writes carry. Changed only by compare-and-set of this record, so a
   * holder that lost it can no longer persist a map.
   */
  lease?: VolumeLease;
  /**
   * Set when a holder released the lease after losing writes it had
   * acknowledged since its last flush: the next holder's first flush reports
   * the loss (and clears this), so that no flush passes as if they were kept.
   */
  writesLost?: boolean;
}

/** Who may write a volume, and under which epoch (holder null: nobody, after a break). */
export interface VolumeLease {
  holder: string | null;
  epoch: number;
  /**
   * While nobody holds the lease: nodes that keep a reader of the volume
   * (cluster/leases/_idle_readers.ts). Taking the lease clears them, and tells
   * each to drop its reader before the taker writes.
   */
  readers?: string[];
}

/** Header of a snapshot record. */
export interface SnapshotHeader {
  volume: string;
  name: string;
  createdAt: string;
}

/** Metadata keys of each kind of record. */
export const recordKey = {
  image: (name: string) => `image/${name}`,
  volume: (name: string) => `volume/${name}`,
  snapshot: (volume: string, name: string) => `snapshot/${volume}@${name}`,
};

/**
 * Encodes a header and its map: u32 header length, JSON header, map root. The
 * map's pages not stored yet are stored first and made durable (by a flush of
 * `volume`'s writes, which covers blocks: a root never names a page a crash
 * may lose).
 */
export async function encodeRecord(
  engine: Engine,
  header: object,
  map: BlockMap,
  volume?: string,
): Promise<Uint8Array> {
  if (await storeMapPages(engine, map)) await engine.flush(volume);
  const json = new TextEncoder().encode(JSON.stringify(header));
  const mapBytes = encodeMapRoot(map);
  if (4 + json.length + mapBytes.length > recordBytesMax) {
    throw new RangeError(
      `Cannot encode a record of ${json.length} header bytes: over ${recordBytesMax}`,
    );
  }
  const bytes = new Uint8Array(4 + json.length + mapBytes.length);
  new DataView(bytes.buffer).setUint32(0, json.length);
  bytes.set(json, 4);
  bytes.set(mapBytes, 4 + json.length);
  return bytes;
}

/**
 * Writes a header and its map at `key` when its version is `expectedVersion`
 * (Engine.putMeta), its new pages pinned (`pins`) until the record names them.
 */
export async function putRecord(
  engine: Engine,
  key: string,
  record: { header: object; map: BlockMap; volume?: string },
  expectedVersion: number,
  pins: PagePins,
): Promise<number> {
  const release = pins.pin(record.map.unstored().map((page) => page.id));
  try {
    const bytes = await encodeRecord(engine, record.header, record.map, record.volume);
    return await engine.putMeta(key, bytes, expectedVersion);
  } finally {
    release();
  }
}

/**
 * Decodes {@linkcode encodeRecord}'s output (or a record written before maps
 * had pages), loading the map's pages from `engine`; throws CorruptionError
 * when malformed.
 */
export async function decodeRecord<T>(
  engine: Engine,
  bytes: Uint8Array,
): Promise<{ header: T; map: BlockMap }> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLength = bytes.length >= 4 ? view.getUint32(0) : Infinity;
  if (4 + jsonLength > bytes.length) throw new CorruptionError("Cannot decode record: truncated");
  let header: T;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + jsonLength)));
  } catch (cause) {
    throw new CorruptionError("Cannot decode record: bad header", { cause });
  }
  return { header, map: await loadMap(bytes.subarray(4 + jsonLength), enginePages(engine)) };
}

/** The header of an encoded record, without decoding its map. */
export function decodeRecordHeader<T>(bytes: Uint8Array): T {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLength = bytes.length >= 4 ? view.getUint32(0) : Infinity;
  if (4 + jsonLength > bytes.length) throw new CorruptionError("Cannot decode record: truncated");
  try {
    return JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + jsonLength)));
  } catch (cause) {
    throw new CorruptionError("Cannot decode record: bad header", { cause });
  }
}

/** The encoded record `bytes` with its header replaced by `header` (the map bytes kept as they are). */
export function withRecordHeader(bytes: Uint8Array, header: object): Uint8Array {
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  const mapBytes = bytes.subarray(4 + jsonLength);
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(4 + json.length + mapBytes.length);
  new DataView(out.buffer).setUint32(0, json.length);
  out.set(json, 4);
  out.set(mapBytes, 4 + json.length);
  return out;
}

/** The map bytes of an encoded record (its root, or a legacy whole map), undecoded. */
export function recordMapBytes(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLength = bytes.length >= 4 ? view.getUint32(0) : Infinity;
  if (4 + jsonLength > bytes.length) throw new CorruptionError("Cannot decode record: truncated");
  return bytes.subarray(4 + jsonLength);
}

/** True when the record's map was written whole, before maps had pages (map_store.ts). */
export function recordHasLegacyMap(bytes: Uint8Array): boolean {
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  return isLegacyMap(bytes.subarray(4 + jsonLength));
}
