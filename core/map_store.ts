/**
 * A map as stored: its root (a few dozen bytes, in the record of its image,
 * volume or snapshot) names its top page; pages are content blocks of the
 * engine (_map_pages.ts), stored before any root names them and loaded whole
 * when the map is read, so a map costs what was written, whatever its size.
 *
 * Root encoding (big endian, 57 bytes): magic u32 ("ATMT"), entry count u32,
 * block size u32, size f64, depth u8, top page length u32, top page SHA-256
 * (32 zero bytes and length 0 for a map with no non-zero entry).
 *
 * Maps written before pages existed (magic "ATMP": every entry in the record)
 * still load; the next change of the record stores them as pages, and a node
 * rewrites the others when it starts (_map_migration.ts).
 */
import { fromHex, toHex } from "../wasm/to_hex.ts";
import { BlockMap, type MapEntry } from "./block_map.ts";
import { CorruptionError } from "./errors.ts";
import type { Engine } from "./engine.ts";
import { blockSizeMax, blockSizeMin, volumeSizeBytesMax } from "./limits.ts";
import { bytesEqual, kindObject } from "./_map_entries.ts";
import {
  decodeInner,
  decodeLeaf,
  newPage,
  type Page,
  pageBytesMax,
  pageEntries,
  pageId,
  refBytes,
  type SealedPage,
} from "./_map_pages.ts";

const rootMagic = 0x41544d54; // "ATMT"
const legacyMagic = 0x41544d50; // "ATMP"
/** Bytes of a stored root. */
export const mapRootBytes = 25 + 4 + refBytes;
/** Pages loaded at once when a map is read. */
const pageLoadsMax = 16;

/** Where pages are read from: an engine's blocks. */
export interface PageSource {
  /** The `length` bytes of page `id`. */
  load(id: string, length: number): Promise<Uint8Array>;
}

/** Pages as an engine's content blocks. */
export function enginePages(engine: Engine): PageSource {
  return {
    async load(id, length) {
      const bytes = new Uint8Array(length);
      await engine.readBlock(id, { offset: 0, length }, bytes);
      return bytes;
    },
  };
}

/**
 * Stores the pages of `map` not stored yet (as content blocks), leaves first.
 * True when any was: they are durable once the engine's next flush resolves.
 */
export async function storeMapPages(engine: Engine, map: BlockMap): Promise<boolean> {
  const pages = map.unstored();
  for (const page of pages) {
    await engine.putBlock(page.id, page.bytes!);
    page.bytes = null;
  }
  return pages.length > 0;
}

/** The root of `map`, which must have no unstored page. */
export function encodeMapRoot(map: BlockMap): Uint8Array {
  const top = map.seal();
  if (map.unstored().length > 0) throw new Error("Cannot encode a map root before its pages");
  const bytes = new Uint8Array(mapRootBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, rootMagic);
  view.setUint32(4, map.count);
  view.setUint32(8, map.blockSize);
  view.setFloat64(12, map.sizeBytes);
  bytes[20] = map.depth;
  if (top !== null) {
    view.setUint32(21, top.length);
    fromHex(top.id, bytes.subarray(25, 25 + refBytes));
  }
  return bytes;
}

/** True when `bytes` is a map written whole, before maps had pages. */
export function isLegacyMap(bytes: Uint8Array): boolean {
  return bytes.length >= 4 &&
    new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0) === legacyMagic;
}

/** The size and block size the root (or whole legacy map) `bytes` describes, checked. */
export function mapShape(bytes: Uint8Array): { sizeBytes: number; blockSize: number } {
  if (bytes.length < 20) throw malformed("too short");
  return shapeOf(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

/** The map whose root (or whole legacy map) is `bytes`, its pages read from `pages`. */
export async function loadMap(bytes: Uint8Array, pages: PageSource): Promise<BlockMap> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 20) throw malformed("too short");
  const magic = view.getUint32(0);
  if (magic === legacyMagic) return decodeLegacy(bytes);
  const { top, ...options } = rootOf(bytes);
  const map = new BlockMap(options);
  if (top === null) return map;
  const leaves = map.depth === 1 ? new Map([[0, top]]) : decodeInner(await loadPage(pages, top));
  const loaded = new Map<number, Page>();
  const queue = [...leaves];
  await Promise.all(Array.from({ length: Math.min(pageLoadsMax, queue.length) }, async () => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      const [number, leaf] = next;
      const page = decodeLeaf(await loadPage(pages, leaf), checkKind);
      if (number * pageEntries + lastPosition(page) >= map.count) {
        throw malformed(`page ${number} holds entries past ${map.count}`);
      }
      page.sealed = { ...leaf, bytes: null };
      loaded.set(number, page);
    }
  }));
  const sealedTop: SealedPage | null = map.depth === 2 ? { ...top, bytes: null } : null;
  return new BlockMap(options, { pages: loaded, top: sealedTop });
}

/**
 * The indexes whose entries differ between two stored maps of one shape
 * (roots `a` and `b`), in increasing order. A page both name is skipped
 * unread: the cost follows what differs, not the size (an incremental
 * backup's changed extents).
 */
export async function* diffMaps(
  a: Uint8Array,
  b: Uint8Array,
  pages: PageSource,
): AsyncIterable<number> {
  if (isLegacyMap(a) || isLegacyMap(b)) {
    const [left, right] = [await loadMap(a, pages), await loadMap(b, pages)];
    if (left.count !== right.count) throw new RangeError("Cannot diff maps of two sizes");
    for (let index = 0; index < left.count; index++) {
      const [x, y] = [left.get(index), right.get(index)];
      if (entryKey(x) !== entryKey(y)) yield index;
    }
    return;
  }
  const [left, right] = [rootOf(a), rootOf(b)];
  if (left.sizeBytes !== right.sizeBytes || left.blockSize !== right.blockSize) {
    throw new RangeError("Cannot diff maps of two shapes");
  }
  if (left.depth === 1) return yield* diffLeaves(left.top, right.top, 0, pages);
  if (left.top?.id === right.top?.id) return;
  const childrenOf = async (top: PageRef | null) =>
    top === null ? new Map<number, PageRef>() : decodeInner(await loadPage(pages, top));
  const [x, y] = [await childrenOf(left.top), await childrenOf(right.top)];
  const positions = [...new Set([...x.keys(), ...y.keys()])].sort((p, q) => p - q);
  for (const position of positions) {
    const [l, r] = [x.get(position) ?? null, y.get(position) ?? null];
    if (l?.id !== r?.id) yield* diffLeaves(l, r, position * pageEntries, pages);
  }
}

type PageRef = { id: string; length: number };

async function* diffLeaves(
  a: PageRef | null,
  b: PageRef | null,
  first: number,
  pages: PageSource,
): AsyncIterable<number> {
  if (a?.id === b?.id) return;
  const leafOf = async (ref: PageRef | null) =>
    ref === null ? newPage() : decodeLeaf(await loadPage(pages, ref), checkKind);
  const [x, y] = [await leafOf(a), await leafOf(b)];
  for (let position = 0; position < pageEntries; position++) {
    const at = position * refBytes;
    if (
      x.kinds[position] !== y.kinds[position] ||
      !bytesEqual(x.refs.subarray(at, at + refBytes), y.refs.subarray(at, at + refBytes))
    ) yield first + position;
  }
}

/** The shape and top page a root names, every field checked. */
function rootOf(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length !== mapRootBytes || view.getUint32(0) !== rootMagic) {
    throw malformed("bad magic or length");
  }
  const { sizeBytes, blockSize } = shapeOf(view);
  const depth = new BlockMap({ sizeBytes, blockSize }).depth;
  if (bytes[20] !== depth) throw malformed(`depth ${bytes[20]}, not ${depth}`);
  const length = view.getUint32(21);
  if (length > pageBytesMax) throw malformed(`a top page of ${length} bytes`);
  const top = length === 0 ? null : { id: toHex(bytes.subarray(25, 25 + refBytes)), length };
  return { sizeBytes, blockSize, depth, top };
}

/** What an entry names, as one comparable string. */
function entryKey(entry: MapEntry): string {
  return entry.kind === "zero" ? "" : entry.kind === "block" ? `b${entry.hash}` : `o${entry.name}`;
}

/** Refuses an entry kind no map writes. */
function checkKind(kind: number): void {
  if (kind > kindObject) throw malformed(`entry kind ${kind}`);
}

async function loadPage(pages: PageSource, page: { id: string; length: number }) {
  const bytes = await pages.load(page.id, page.length);
  if (bytes.length !== page.length || pageId(bytes) !== page.id) {
    throw new CorruptionError(`Cannot load map page ${page.id}: its bytes do not match its name`);
  }
  return bytes;
}

/**
 * A map in the form written before pages (magic, entry count, block size,
 * size, then every kind byte and every 32-byte reference).
 */
function decodeLegacy(bytes: Uint8Array): BlockMap {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const options = shapeOf(view);
  const map = new BlockMap(options);
  const count = map.count;
  if (bytes.length !== 20 + count * (1 + refBytes)) throw malformed("bad length");
  const kinds = bytes.subarray(20, 20 + count);
  const refs = bytes.subarray(20 + count);
  const parts = new Map<number, Page>();
  for (let index = 0; index < count; index++) {
    const kind = kinds[index];
    if (kind === 0) continue;
    if (kind > kindObject) throw malformed("unknown entry kind");
    const number = Math.floor(index / pageEntries);
    const position = index - number * pageEntries;
    let page = parts.get(number);
    if (page === undefined) parts.set(number, page = newPage());
    page.kinds[position] = kind;
    page.refs.set(refs.subarray(index * refBytes, (index + 1) * refBytes), position * refBytes);
    page.used++;
  }
  return new BlockMap(options, { pages: parts, top: null });
}

function shapeOf(view: DataView): { sizeBytes: number; blockSize: number } {
  const count = view.getUint32(4);
  const blockSize = view.getUint32(8);
  const sizeBytes = view.getFloat64(12);
  if (
    !Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > volumeSizeBytesMax ||
    blockSize < blockSizeMin || blockSize > blockSizeMax ||
    count !== Math.ceil(sizeBytes / blockSize)
  ) throw malformed(`bad header (size ${sizeBytes}, block size ${blockSize}, count ${count})`);
  return { sizeBytes, blockSize };
}

function lastPosition(page: Page): number {
  for (let position = pageEntries - 1; position >= 0; position--) {
    if (page.kinds[position] !== 0) return position;
  }
  return -1;
}

function malformed(why: string): CorruptionError {
  return new CorruptionError(`Cannot decode map: ${why}`);
}
