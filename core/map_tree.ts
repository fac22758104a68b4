/**
 * A map as a tree of pages (issue 12: volumes of any size), the building block
 * of maps whose cost follows what was written, not the volume's size. Not yet
 * what volumes use: `BlockMap` (one value per map) still is.
 *
 * - A leaf page holds the entries of {@linkcode pageEntries} consecutive
 *   blocks (16 GiB of volume at 4 MiB blocks); an inner page names up to
 *   {@linkcode pageEntries} pages of the level below. Two levels cover
 *   `mapEntriesMax` entries (64 TiB at 4 MiB blocks).
 * - Pages are immutable and named by the SHA-256 of their bytes, so an image,
 *   its snapshots and its clones share every page they have in common, and two
 *   roots that name the same page have the same entries below it.
 * - Pages are sparse: a page lists only its non-zero entries (children), and a
 *   span never written has no page at all. An empty map of any size is its
 *   root alone; a write changes the pages on one path; a flush stores only the
 *   pages that changed, leaf first, and returns the new root.
 *
 * Page encoding (big endian): magic u32 ("ATPL" leaf, "ATPI" inner), count u32,
 * then `count` slots in increasing position: position u16, kind u8 (a leaf's
 * entry kind; 0 in an inner page), and a 32-byte reference (block_map.ts's
 * entry reference, or a child page's SHA-256).
 */
import { createHash } from "node:crypto";
import { fromHex, toHex } from "../wasm/to_hex.ts";
import { assert } from "./assert.ts";
import { bytesEqual, decodeEntry, encodeEntry, entryRefBytes, type MapEntry } from "./block_map.ts";
import { CorruptionError } from "./errors.ts";
import { mapEntriesMax } from "./limits.ts";

/** Slots of a page, leaf or inner. */
export const pageEntries = 4096;
const leafMagic = 0x4154504c; // "ATPL"
const innerMagic = 0x41545049; // "ATPI"
const pageHeadBytes = 8;
const slotBytes = 3 + entryRefBytes;
/** Largest page: every slot used. */
export const pageBytesMax = pageHeadBytes + pageEntries * slotBytes;

/** Where pages live: content-addressed, immutable. */
export interface PageStore {
  /** The bytes of page `id` (its SHA-256, hex); throws when it is missing. */
  load(id: string): Promise<Uint8Array>;
  /** Stores `bytes` under `id`, the SHA-256 of `bytes` (storing a page twice is harmless). */
  store(id: string, bytes: Uint8Array): Promise<void>;
}

/** What names a tree: small, whatever the map's size. */
export interface TreeRoot {
  entries: number;
  /** Levels of pages: 1 (one leaf) or more; an inner level above every leaf level. */
  depth: number;
  /** The top page; null while nothing was ever set to non-zero. */
  top: string | null;
}

/** A page as decoded: its non-zero slots by position. */
type Slots = Map<number, { kind: number; ref: Uint8Array }>;

interface Node {
  leaf: boolean;
  slots: Slots;
  /** Changed since it was loaded or stored: its id is stale. */
  dirty: boolean;
  /** Children loaded (inner pages only), by position. */
  children: Map<number, Node>;
}

/** The depth a map of `entries` entries needs. */
export function treeDepth(entries: number): number {
  assert(Number.isSafeInteger(entries) && entries >= 0 && entries <= mapEntriesMax);
  let depth = 1;
  for (let span = pageEntries; span < entries; span *= pageEntries) depth++;
  return depth;
}

/** The root of an empty map of `entries` entries. */
export function emptyRoot(entries: number): TreeRoot {
  return { entries, depth: treeDepth(entries), top: null };
}

/** A map tree being read and changed; see the module doc. */
export class MapTree {
  readonly entries: number;
  readonly depth: number;
  #store: PageStore;
  #top: Node | null = null;
  #topId: string | null;

  constructor(root: TreeRoot, store: PageStore) {
    assert(root.depth === treeDepth(root.entries), `depth ${root.depth} of ${root.entries}`);
    this.entries = root.entries;
    this.depth = root.depth;
    this.#topId = root.top;
    this.#store = store;
  }

  /** The entry at `index`; loads the pages on its path that are not loaded yet. */
  async get(index: number): Promise<MapEntry> {
    this.#checkIndex(index);
    const leaf = await this.#leaf(index, false);
    const slot = leaf?.slots.get(index % pageEntries);
    return slot === undefined ? { kind: "zero" } : decodeEntry(slot.kind, slot.ref);
  }

  /** Sets the entry at `index` (in memory until flush()). */
  async set(index: number, entry: MapEntry): Promise<void> {
    this.#checkIndex(index);
    if (entry.kind === "zero" && await this.#leaf(index, false) === null) {
      return; // zero where nothing was written
    }
    const leaf = (await this.#leaf(index, true))!; // the path is marked changed
    const ref = new Uint8Array(entryRefBytes);
    const kind = encodeEntry(entry, ref);
    if (kind === 0) leaf.slots.delete(index % pageEntries);
    else leaf.slots.set(index % pageEntries, { kind, ref });
  }

  /**
   * Stores the pages that changed since the last flush, leaves first (a page
   * is stored before any page naming it), and returns the new root.
   */
  async flush(): Promise<TreeRoot> {
    if (this.#top !== null && this.#top.dirty) this.#topId = await this.#flushNode(this.#top);
    return { entries: this.entries, depth: this.depth, top: this.#topId };
  }

  async #flushNode(node: Node): Promise<string | null> {
    for (const [position, child] of node.children) {
      if (!child.dirty) continue;
      const id = await this.#flushNode(child);
      if (id === null) node.slots.delete(position);
      else node.slots.set(position, { kind: 0, ref: fromHexId(id) });
    }
    node.dirty = false;
    if (node.slots.size === 0) return null; // an empty page is no page
    const bytes = encodePage(node.leaf ? leafMagic : innerMagic, node);
    const id = pageId(bytes);
    await this.#store.store(id, bytes);
    return id;
  }

  /** The leaf holding `index`, loaded; created (with its path, marked dirty) when `create`. */
  async #leaf(index: number, create: boolean): Promise<Node | null> {
    if (this.#top === null) {
      if (this.#topId !== null) this.#top = await this.#load(this.#topId, this.depth === 1);
      else if (create) this.#top = newNode(this.depth === 1);
      else return null;
    }
    let node = this.#top;
    if (create) node.dirty = true;
    for (let level = this.depth - 1; level >= 1; level--) {
      const position = Math.floor(index / pageEntries ** level) % pageEntries;
      let child = node.children.get(position);
      if (child === undefined) {
        const slot = node.slots.get(position);
        if (slot !== undefined) child = await this.#load(toHex(slot.ref), level === 1);
        else if (create) child = newNode(level === 1);
        else return null;
        node.children.set(position, child);
      }
      if (create) child.dirty = true;
      node = child;
    }
    return node;
  }

  async #load(id: string, leaf: boolean): Promise<Node> {
    const { magic, slots } = await loadPage(this.#store, id);
    if (magic !== (leaf ? leafMagic : innerMagic)) {
      throw new CorruptionError(
        `Cannot load map page ${id}: a ${leaf ? "leaf" : "inner"} page expected`,
      );
    }
    return { leaf, slots, dirty: false, children: new Map() };
  }

  #checkIndex(index: number): void {
    assert(Number.isSafeInteger(index) && index >= 0 && index < this.entries, `index ${index}`);
  }
}

/**
 * The indexes whose entries differ between two trees of the same shape, in
 * increasing order. A page both name is skipped whole: the cost follows what
 * changed between them, not the map's size.
 */
export async function* diffTrees(
  a: TreeRoot,
  b: TreeRoot,
  store: PageStore,
): AsyncIterable<number> {
  assert(a.entries === b.entries && a.depth === b.depth, "trees of one shape");
  yield* diffPages(a.top, b.top, a.depth, 0, store);
}

async function* diffPages(
  a: string | null,
  b: string | null,
  level: number,
  first: number,
  store: PageStore,
): AsyncIterable<number> {
  if (a === b) return;
  const slotsOf = async (id: string | null) =>
    id === null ? new Map() : (await loadPage(store, id)).slots;
  const [left, right] = [await slotsOf(a), await slotsOf(b)];
  const positions = [...new Set([...left.keys(), ...right.keys()])].sort((x, y) => x - y);
  const span = pageEntries ** (level - 1);
  for (const position of positions) {
    const [x, y] = [left.get(position), right.get(position)];
    if (level === 1) {
      const same = x !== undefined && y !== undefined && x.kind === y.kind &&
        bytesEqual(x.ref, y.ref);
      if (!same) yield first + position;
      continue;
    }
    const idOf = (slot: { ref: Uint8Array } | undefined) =>
      slot === undefined ? null : toHex(slot.ref);
    yield* diffPages(idOf(x), idOf(y), level - 1, first + position * span, store);
  }
}

function newNode(leaf: boolean): Node {
  return { leaf, slots: new Map(), dirty: true, children: new Map() };
}

function encodePage(magic: number, node: Node): Uint8Array {
  const bytes = new Uint8Array(pageHeadBytes + node.slots.size * slotBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, magic);
  view.setUint32(4, node.slots.size);
  let at = pageHeadBytes;
  for (const position of [...node.slots.keys()].sort((x, y) => x - y)) {
    const slot = node.slots.get(position)!;
    view.setUint16(at, position);
    bytes[at + 2] = slot.kind;
    bytes.set(slot.ref, at + 3);
    at += slotBytes;
  }
  return bytes;
}

/** Page `id` from `store`, checked against its name and decoded. */
async function loadPage(store: PageStore, id: string): Promise<{ magic: number; slots: Slots }> {
  const bytes = await store.load(id);
  if (pageId(bytes) !== id) throw new CorruptionError(`Cannot load map page ${id}: bad hash`);
  return decodePage(bytes);
}

function decodePage(bytes: Uint8Array): { magic: number; slots: Slots } {
  const malformed = (why: string) => new CorruptionError(`Cannot decode map page: ${why}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < pageHeadBytes) throw malformed("too short");
  const magic = view.getUint32(0);
  if (magic !== leafMagic && magic !== innerMagic) throw malformed("bad magic");
  const count = view.getUint32(4);
  if (count > pageEntries || bytes.length !== pageHeadBytes + count * slotBytes) {
    throw malformed(`bad length for ${count} slots`);
  }
  const slots: Slots = new Map();
  let last = -1;
  for (let i = 0, at = pageHeadBytes; i < count; i++, at += slotBytes) {
    const position = view.getUint16(at);
    const kind = bytes[at + 2];
    if (position <= last || position >= pageEntries) throw malformed("slots out of order");
    if ((magic === innerMagic) !== (kind === 0)) throw malformed(`slot kind ${kind}`);
    if (magic === leafMagic) decodeEntry(kind, bytes.subarray(at + 3, at + slotBytes));
    slots.set(position, { kind, ref: bytes.slice(at + 3, at + slotBytes) });
    last = position;
  }
  return { magic, slots };
}

function pageId(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function fromHexId(id: string): Uint8Array {
  const bytes = new Uint8Array(32);
  fromHex(id, bytes);
  return bytes;
}
