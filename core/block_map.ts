/**
 * A map: for each block-sized span of an image, volume or snapshot, what holds
 * its bytes. An entry is one of
 *
 * - zero: never written or all zeros; reads return zeros without touching storage;
 * - block: an immutable content block, named by SHA-256, shared by anyone;
 * - object: a volume's private object `UID.GENERATION.INDEX`; the volume whose uid
 *   is UID writes it in place while its generation is still GENERATION, and a
 *   snapshot (which bumps the generation) freezes it.
 *
 * Encoding (big endian): magic u32, entry count u32, block size u32, size f64,
 * then `count` kind bytes, then 32 bytes per entry (a hash, or uid[16] gen u32
 * index u32 and 8 zero bytes).
 */
import { fromHex, toHex } from "../wasm/to_hex.ts";
import { assert } from "./assert.ts";
import { CorruptionError } from "./errors.ts";
import { blockSizeMax, blockSizeMin, mapEntriesMax, volumeSizeBytesMax } from "./limits.ts";

/** What an entry of a map points at. */
export type MapEntry =
  | { kind: "zero" }
  | { kind: "block"; hash: string }
  | { kind: "object"; name: string };

const kindZero = 0;
const kindBlock = 1;
const kindObject = 2;
const refBytes = 32;
const headerBytes = 20;
const mapMagic = 0x41544d50; // "ATMP"

/** Index → content for one image, volume or snapshot. */
export class BlockMap {
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly count: number;
  #kinds: Uint8Array;
  #refs: Uint8Array;
  /** Decoded entries, filled as they are read: the hot path reads the same few often. */
  #decoded: (MapEntry | undefined)[] | null = null;

  constructor(options: { sizeBytes: number; blockSize: number }) {
    const { sizeBytes, blockSize } = options;
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0 && sizeBytes <= volumeSizeBytesMax);
    assert(Number.isInteger(blockSize) && blockSize >= blockSizeMin && blockSize <= blockSizeMax);
    this.sizeBytes = sizeBytes;
    this.blockSize = blockSize;
    this.count = Math.ceil(sizeBytes / blockSize);
    assert(this.count <= mapEntriesMax);
    this.#kinds = new Uint8Array(this.count);
    this.#refs = new Uint8Array(this.count * refBytes);
  }

  /** Bytes of the span of entry `index` (the last one may be short). */
  spanBytes(index: number): number {
    assert(index >= 0 && index < this.count);
    return Math.min(this.blockSize, this.sizeBytes - index * this.blockSize);
  }

  /** The entry at `index`. */
  get(index: number): MapEntry {
    assert(index >= 0 && index < this.count, `map index ${index} of ${this.count}`);
    this.#decoded ??= new Array(this.count);
    return this.#decoded[index] ??= this.#decode(index);
  }

  #decode(index: number): MapEntry {
    const ref = this.#refs.subarray(index * refBytes, (index + 1) * refBytes);
    return decodeEntry(this.#kinds[index], ref);
  }

  /** True when entry `index` is zero. */
  isZero(index: number): boolean {
    return this.#kinds[index] === kindZero;
  }

  /** Sets entry `index`. */
  set(index: number, entry: MapEntry): void {
    assert(index >= 0 && index < this.count, `map index ${index} of ${this.count}`);
    if (this.#decoded !== null) this.#decoded[index] = undefined;
    const ref = this.#refs.subarray(index * refBytes, (index + 1) * refBytes);
    this.#kinds[index] = encodeEntry(entry, ref);
  }

  /** An independent copy (a snapshot or a thin clone takes one): O(entries), no data. */
  clone(): BlockMap {
    const copy = new BlockMap({ sizeBytes: this.sizeBytes, blockSize: this.blockSize });
    copy.#kinds.set(this.#kinds);
    copy.#refs.set(this.#refs);
    return copy;
  }

  /** Block hashes and object names this map references, each once. */
  references(): { blocks: Set<string>; objects: Set<string> } {
    const blocks = new Set<string>();
    const objects = new Set<string>();
    for (let index = 0; index < this.count; index++) {
      if (this.#kinds[index] === kindZero) continue;
      const entry = this.#decode(index);
      if (entry.kind === "block") blocks.add(entry.hash);
      if (entry.kind === "object") objects.add(entry.name);
    }
    return { blocks, objects };
  }

  /** True when both maps have the same size, block size and entries. */
  equals(other: BlockMap): boolean {
    return this.sizeBytes === other.sizeBytes && this.blockSize === other.blockSize &&
      bytesEqual(this.#kinds, other.#kinds) && bytesEqual(this.#refs, other.#refs);
  }

  /** The binary form stored in metadata. */
  encode(): Uint8Array {
    const bytes = new Uint8Array(headerBytes + this.count * (1 + refBytes));
    const view = new DataView(bytes.buffer);
    view.setUint32(0, mapMagic);
    view.setUint32(4, this.count);
    view.setUint32(8, this.blockSize);
    view.setFloat64(12, this.sizeBytes);
    bytes.set(this.#kinds, headerBytes);
    bytes.set(this.#refs, headerBytes + this.count);
    return bytes;
  }

  /** Parses {@linkcode BlockMap.encode}'s output; throws CorruptionError when malformed. */
  static decode(bytes: Uint8Array): BlockMap {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const malformed = (why: string) => new CorruptionError(`Cannot decode map: ${why}`);
    if (bytes.length < headerBytes || view.getUint32(0) !== mapMagic) throw malformed("bad magic");
    const count = view.getUint32(4);
    const blockSize = view.getUint32(8);
    const sizeBytes = view.getFloat64(12);
    if (
      !Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > volumeSizeBytesMax ||
      blockSize < blockSizeMin || blockSize > blockSizeMax ||
      count !== Math.ceil(sizeBytes / blockSize)
    ) throw malformed(`bad header (size ${sizeBytes}, block size ${blockSize}, count ${count})`);
    if (bytes.length !== headerBytes + count * (1 + refBytes)) throw malformed("bad length");
    const map = new BlockMap({ sizeBytes, blockSize });
    map.#kinds.set(bytes.subarray(headerBytes, headerBytes + count));
    map.#refs.set(bytes.subarray(headerBytes + count));
    if (map.#kinds.some((kind) => kind > kindObject)) throw malformed("unknown entry kind");
    return map;
  }
}

/** Bytes of an entry's reference in its binary form (besides its kind byte). */
export const entryRefBytes = refBytes;

/** Writes `entry`'s reference into `ref` (entryRefBytes long); returns its kind byte. */
export function encodeEntry(entry: MapEntry, ref: Uint8Array): number {
  assert(ref.length === refBytes);
  ref.fill(0);
  if (entry.kind === "zero") return kindZero;
  if (entry.kind === "block") {
    fromHex(entry.hash, ref);
    return kindBlock;
  }
  const { uid, generation, index } = parseObjectName(entry.name);
  fromHex(uid, ref.subarray(0, 16));
  const view = new DataView(ref.buffer, ref.byteOffset, refBytes);
  view.setUint32(16, generation);
  view.setUint32(20, index);
  return kindObject;
}

/** The entry of kind byte `kind` and reference `ref`; throws CorruptionError on an unknown kind. */
export function decodeEntry(kind: number, ref: Uint8Array): MapEntry {
  switch (kind) {
    case kindZero:
      return { kind: "zero" };
    case kindBlock:
      return { kind: "block", hash: toHex(ref) };
    case kindObject: {
      const view = new DataView(ref.buffer, ref.byteOffset, refBytes);
      const name = `${toHex(ref.subarray(0, 16))}.${view.getUint32(16)}.${view.getUint32(20)}`;
      return { kind: "object", name };
    }
    default:
      throw new CorruptionError(`Cannot decode map entry: unknown kind ${kind}`);
  }
}

/** Name of the object holding entry `index` of the volume `uid` in `generation`. */
export function objectName(uid: string, generation: number, index: number): string {
  return `${uid}.${generation}.${index}`;
}

/** Splits an object name into its parts. */
export function parseObjectName(name: string): { uid: string; generation: number; index: number } {
  const [uid, generation, index] = name.split(".");
  assert(/^[0-9a-f]{32}$/.test(uid) && generation !== undefined && index !== undefined);
  return { uid, generation: Number(generation), index: Number(index) };
}

/** True when `a` and `b` hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
