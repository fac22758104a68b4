/**
 * The pages of a map (block_map.ts) and their stored form.
 *
 * A leaf page holds {@linkcode pageEntries} consecutive entries (16 GiB of
 * volume at 4 MiB blocks) in memory as two dense arrays; a map keeps only the
 * pages that hold a non-zero entry, so never-written spans cost nothing. Maps
 * that copy one another (a snapshot, a clone) share pages until one changes
 * them: a page marked `shared` is copied before its first change.
 *
 * Stored, a page is immutable and named by the SHA-256 of its bytes (it is a
 * content block to the engine, replicated, healed and collected as any other):
 * an image, its snapshots and its clones share every page they have in
 * common. A map of up to `pageEntries` entries is one leaf; a larger one is an
 * inner page naming its leaves (two levels reach `mapEntriesMax`).
 *
 * Encoding (big endian): magic u32 ("ATPL" leaf, "ATPI" inner), count u32,
 * then `count` slots in increasing position. A leaf slot: position u16, kind
 * u8 (block_map.ts), a 32-byte reference. An inner slot: position u16, the
 * child's byte length u32, its 32-byte SHA-256.
 */
import { createHash } from "node:crypto";
import { fromHex, toHex } from "../wasm/to_hex.ts";
import { assert } from "./assert.ts";
import { CorruptionError } from "./errors.ts";
import { mapPageBytesMax, mapPageEntries } from "./limits.ts";

/** Entries of a leaf page, and children of an inner page. */
export const pageEntries = mapPageEntries;
/** Bytes of an entry's reference (a hash, or an object's uid, generation and index). */
export const refBytes = 32;
const leafMagic = 0x4154504c; // "ATPL"
const innerMagic = 0x41545049; // "ATPI"
const headBytes = 8;
const leafSlotBytes = 3 + refBytes;
const innerSlotBytes = 6 + refBytes;
/** Largest page: every slot of a leaf or an inner page used. */
export const pageBytesMax = mapPageBytesMax;

assert(pageBytesMax === headBytes + pageEntries * Math.max(leafSlotBytes, innerSlotBytes));

/** A stored page: its name (SHA-256) and length, and its bytes until they are stored. */
export interface SealedPage {
  id: string;
  length: number;
  /** The encoded page while it waits to be stored; null once stored (or loaded). */
  bytes: Uint8Array | null;
}

/** A leaf page in memory. */
export interface Page {
  kinds: Uint8Array;
  refs: Uint8Array;
  /** Non-zero entries. */
  used: number;
  /** Another map holds this page too: copy it before changing it. */
  shared: boolean;
  /** Its stored form, while it is unchanged since sealed or loaded. */
  sealed: SealedPage | null;
}

/** An empty leaf page. */
export function newPage(): Page {
  return {
    kinds: new Uint8Array(pageEntries),
    refs: new Uint8Array(pageEntries * refBytes),
    used: 0,
    shared: false,
    sealed: null,
  };
}

/** A private copy of `page`, to be changed (its stored form goes with the change). */
export function copyPage(page: Page): Page {
  return {
    kinds: page.kinds.slice(),
    refs: page.refs.slice(),
    used: page.used,
    shared: false,
    sealed: page.sealed,
  };
}

/** Encodes and names a leaf page. */
export function sealLeaf(page: Page): SealedPage {
  const bytes = new Uint8Array(headBytes + page.used * leafSlotBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, leafMagic);
  view.setUint32(4, page.used);
  let at = headBytes;
  for (let position = 0; position < pageEntries; position++) {
    const kind = page.kinds[position];
    if (kind === 0) continue;
    view.setUint16(at, position);
    bytes[at + 2] = kind;
    bytes.set(page.refs.subarray(position * refBytes, (position + 1) * refBytes), at + 3);
    at += leafSlotBytes;
  }
  assert(at === bytes.length, "a page's used count matches its entries");
  return { id: pageId(bytes), length: bytes.length, bytes };
}

/** Encodes and names an inner page over its children (position → sealed leaf). */
export function sealInner(children: Map<number, SealedPage>): SealedPage {
  const positions = [...children.keys()].sort((a, b) => a - b);
  const bytes = new Uint8Array(headBytes + positions.length * innerSlotBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, innerMagic);
  view.setUint32(4, positions.length);
  let at = headBytes;
  for (const position of positions) {
    const child = children.get(position)!;
    view.setUint16(at, position);
    view.setUint32(at + 2, child.length);
    fromHex(child.id, bytes.subarray(at + 6, at + 6 + refBytes));
    at += innerSlotBytes;
  }
  return { id: pageId(bytes), length: bytes.length, bytes };
}

/** Decodes a leaf page (its name checked by the caller); `check` validates each entry. */
export function decodeLeaf(
  bytes: Uint8Array,
  check: (kind: number, ref: Uint8Array) => void,
): Page {
  const { view, count } = head(bytes, leafMagic, leafSlotBytes);
  const page = newPage();
  let last = -1;
  for (let i = 0, at = headBytes; i < count; i++, at += leafSlotBytes) {
    const position = view.getUint16(at);
    const kind = bytes[at + 2];
    if (position <= last || position >= pageEntries) throw malformed("slots out of order");
    const ref = bytes.subarray(at + 3, at + leafSlotBytes);
    if (kind === 0) throw malformed("a zero entry is stored");
    check(kind, ref);
    page.kinds[position] = kind;
    page.refs.set(ref, position * refBytes);
    last = position;
  }
  page.used = count;
  return page;
}

/** Decodes an inner page: its children by position. */
export function decodeInner(bytes: Uint8Array): Map<number, { id: string; length: number }> {
  const { view, count } = head(bytes, innerMagic, innerSlotBytes);
  const children = new Map<number, { id: string; length: number }>();
  let last = -1;
  for (let i = 0, at = headBytes; i < count; i++, at += innerSlotBytes) {
    const position = view.getUint16(at);
    const length = view.getUint32(at + 2);
    if (position <= last || position >= pageEntries) throw malformed("slots out of order");
    if (length > pageBytesMax) throw malformed(`a child of ${length} bytes`);
    children.set(position, { id: toHex(bytes.subarray(at + 6, at + 6 + refBytes)), length });
    last = position;
  }
  return children;
}

function head(bytes: Uint8Array, magic: number, slotBytes: number) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < headBytes) throw malformed("too short");
  if (view.getUint32(0) !== magic) {
    throw malformed(`a${magic === leafMagic ? " leaf" : "n inner"} page expected`);
  }
  const count = view.getUint32(4);
  if (count > pageEntries || bytes.length !== headBytes + count * slotBytes) {
    throw malformed(`bad length for ${count} slots`);
  }
  return { view, count };
}

/** The SHA-256 of a page's bytes, its name. */
export function pageId(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function malformed(why: string): CorruptionError {
  return new CorruptionError(`Cannot decode map page: ${why}`);
}
