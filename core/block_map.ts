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
 * A map is made of pages of 4096 entries (_map_pages.ts) and holds only those
 * with a non-zero entry, so what it costs (memory, copies, what a flush
 * stores) follows what was written, not the volume's size: an empty 64 TiB
 * map holds nothing, a copy shares every page until one side changes it, and
 * a change re-seals one page. Stored (map_store.ts), a map is a small root in
 * its record naming content-addressed pages.
 */
import { assert } from "./assert.ts";
import { blockSizeMax, blockSizeMin, mapEntriesMax, volumeSizeBytesMax } from "./limits.ts";
import {
  copyPage,
  newPage,
  type Page,
  pageEntries,
  refBytes,
  type SealedPage,
  sealInner,
  sealLeaf,
} from "./_map_pages.ts";
import {
  bytesEqual,
  decodeEntry,
  encodeEntry,
  kindBlock,
  kindObject,
  kindZero,
  type MapEntry,
} from "./_map_entries.ts";

export {
  bytesEqual,
  decodeEntry,
  encodeEntry,
  entryRefBytes,
  type MapEntry,
  objectName,
  parseObjectName,
} from "./_map_entries.ts";

/** What a map is made of, when it is loaded (map_store.ts) rather than new. */
export interface MapParts {
  /** Leaf pages by number (index / 4096), each with a non-zero entry. */
  pages: Map<number, Page>;
  /** The stored top page, when the map has two levels and is loaded. */
  top: SealedPage | null;
}

/** Index → content for one image, volume or snapshot. */
export class BlockMap {
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly count: number;
  /** 1: the map is one leaf page at most; 2: an inner page names the leaves. */
  readonly depth: 1 | 2;
  #pages: Map<number, Page>;
  /** The sealed inner page (depth 2), while no leaf changed since. */
  #top: SealedPage | null;
  /** Decoded entries per page, filled as they are read: the hot path reads the same few often. */
  #decoded = new Map<number, (MapEntry | undefined)[]>();

  constructor(options: { sizeBytes: number; blockSize: number }, parts?: MapParts) {
    const { sizeBytes, blockSize } = options;
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0 && sizeBytes <= volumeSizeBytesMax);
    assert(Number.isInteger(blockSize) && blockSize >= blockSizeMin && blockSize <= blockSizeMax);
    this.sizeBytes = sizeBytes;
    this.blockSize = blockSize;
    this.count = Math.ceil(sizeBytes / blockSize);
    assert(this.count <= mapEntriesMax);
    this.depth = this.count <= pageEntries ? 1 : 2;
    this.#pages = parts?.pages ?? new Map();
    this.#top = parts?.top ?? null;
  }

  /** Bytes of the span of entry `index` (the last one may be short). */
  spanBytes(index: number): number {
    assert(index >= 0 && index < this.count);
    return Math.min(this.blockSize, this.sizeBytes - index * this.blockSize);
  }

  /** The entry at `index`. */
  get(index: number): MapEntry {
    assert(index >= 0 && index < this.count, `map index ${index} of ${this.count}`);
    const number = Math.floor(index / pageEntries);
    const page = this.#pages.get(number);
    if (page === undefined) return zeroEntry;
    let decoded = this.#decoded.get(number);
    if (decoded === undefined) this.#decoded.set(number, decoded = new Array(pageEntries));
    const position = index - number * pageEntries;
    return decoded[position] ??= decodeEntry(
      page.kinds[position],
      page.refs.subarray(position * refBytes, (position + 1) * refBytes),
    );
  }

  /** True when entry `index` is zero. */
  isZero(index: number): boolean {
    const page = this.#pages.get(Math.floor(index / pageEntries));
    return page === undefined || page.kinds[index % pageEntries] === kindZero;
  }

  /** Entries that are not zero. */
  get allocated(): number {
    let used = 0;
    for (const page of this.#pages.values()) used += page.used;
    return used;
  }

  /** Sets entry `index`. */
  set(index: number, entry: MapEntry): void {
    assert(index >= 0 && index < this.count, `map index ${index} of ${this.count}`);
    const number = Math.floor(index / pageEntries);
    const position = index - number * pageEntries;
    let page = this.#pages.get(number);
    if (entry.kind === "zero" && (page === undefined || page.kinds[position] === kindZero)) return;
    if (page === undefined) this.#pages.set(number, page = newPage());
    else if (page.shared) this.#pages.set(number, page = copyPage(page));
    page.sealed = null;
    this.#top = null;
    this.#decoded.get(number)?.fill(undefined, position, position + 1);
    const before = page.kinds[position];
    const kind = encodeEntry(
      entry,
      page.refs.subarray(position * refBytes, (position + 1) * refBytes),
    );
    page.kinds[position] = kind;
    page.used += (kind === kindZero ? 0 : 1) - (before === kindZero ? 0 : 1);
    if (page.used === 0) {
      this.#pages.delete(number);
      this.#decoded.delete(number);
    }
  }

  /** An independent copy (a snapshot or a thin clone takes one): shares every page, copies none. */
  clone(): BlockMap {
    for (const page of this.#pages.values()) page.shared = true;
    return new BlockMap(this, { pages: new Map(this.#pages), top: this.#top });
  }

  /**
   * An independent copy of `sizeBytes` bytes (a volume grown or shrunk, a clone
   * larger than its origin): shares every page it keeps; entries past the new
   * end are gone, and entries it adds are zero.
   */
  resized(sizeBytes: number): BlockMap {
    const copy = this.clone();
    const resized = new BlockMap({ sizeBytes, blockSize: this.blockSize }, {
      pages: new Map(),
      top: null,
    });
    for (const [number, page] of copy.#pages) {
      const kept = resized.count - number * pageEntries; // positions of this page kept
      if (kept <= 0) continue;
      if (kept >= pageEntries || page.kinds.subarray(kept).every((kind) => kind === kindZero)) {
        resized.#pages.set(number, page);
        continue;
      }
      const cut = copyPage(page);
      cut.sealed = null;
      for (let position = kept; position < pageEntries; position++) {
        if (cut.kinds[position] === kindZero) continue;
        cut.kinds[position] = kindZero;
        cut.refs.fill(0, position * refBytes, (position + 1) * refBytes);
        cut.used--;
      }
      if (cut.used > 0) resized.#pages.set(number, cut);
    }
    return resized;
  }

  /**
   * Names every page as it is now (encoding and hashing those changed since),
   * and returns the top one: the leaf, or the inner page naming the leaves;
   * null for a map with no non-zero entry.
   */
  seal(): SealedPage | null {
    for (const page of this.#pages.values()) page.sealed ??= sealLeaf(page);
    if (this.depth === 1) return this.#pages.get(0)?.sealed ?? null;
    if (this.#top === null && this.#pages.size > 0) {
      const leaves = new Map<number, SealedPage>();
      for (const [number, page] of this.#pages) leaves.set(number, page.sealed!);
      this.#top = sealInner(leaves);
    }
    return this.#top;
  }

  /** Sealed pages not stored yet, leaves before the page naming them (map_store.ts stores them). */
  unstored(): SealedPage[] {
    const top = this.seal();
    const pages = [...this.#pages.values()].map((page) => page.sealed!);
    if (this.depth === 2 && top !== null) pages.push(top);
    return pages.filter((page) => page.bytes !== null);
  }

  /** Block hashes (pages included: they are blocks) and object names this map references. */
  references(): { blocks: Set<string>; objects: Set<string> } {
    const blocks = new Set<string>();
    const objects = new Set<string>();
    const top = this.seal();
    if (top !== null) blocks.add(top.id);
    for (const [number, page] of this.#pages) {
      blocks.add(page.sealed!.id);
      for (let position = 0; position < pageEntries; position++) {
        const kind = page.kinds[position];
        if (kind !== kindBlock && kind !== kindObject) continue;
        const entry = this.get(number * pageEntries + position);
        if (entry.kind === "block") blocks.add(entry.hash);
        if (entry.kind === "object") objects.add(entry.name);
      }
    }
    return { blocks, objects };
  }

  /**
   * True when entry `index` names something other than `base`'s entry there
   * (past `base`'s end: anything but zero). A volume's entry differs from its
   * snapshot's once written since: the snapshot froze its objects, so the
   * first write copied the entry up to an object of a later generation.
   */
  differsAt(base: BlockMap, index: number): boolean {
    assert(index >= 0 && index < this.count, `map index ${index} of ${this.count}`);
    assert(base.blockSize === this.blockSize);
    const number = Math.floor(index / pageEntries);
    const position = index - number * pageEntries;
    const page = this.#pages.get(number);
    const theirs = index < base.count ? base.#pages.get(number) : undefined;
    if (page === theirs) return false;
    const kind = page?.kinds[position] ?? kindZero;
    if (kind !== (theirs?.kinds[position] ?? kindZero)) return true;
    if (kind === kindZero) return false;
    const at = position * refBytes;
    return !bytesEqual(
      page!.refs.subarray(at, at + refBytes),
      theirs!.refs.subarray(at, at + refBytes),
    );
  }

  /**
   * The indexes whose entries differ from `base`'s ({@linkcode differsAt}), in
   * increasing order. A page both maps share, or that both hold sealed under
   * one name, is skipped unread, so the cost follows the pages that changed.
   */
  *changedSince(base: BlockMap): Generator<number> {
    if (base.blockSize !== this.blockSize) {
      throw new RangeError("Cannot diff maps of two block sizes");
    }
    const numbers = new Set(this.#pages.keys());
    for (const number of base.#pages.keys()) {
      if (number * pageEntries < this.count) numbers.add(number);
    }
    for (const number of [...numbers].sort((a, b) => a - b)) {
      const [page, theirs] = [this.#pages.get(number), base.#pages.get(number)];
      if (page === theirs) continue;
      if (page?.sealed && theirs?.sealed && page.sealed.id === theirs.sealed.id) continue;
      const end = Math.min(pageEntries, this.count - number * pageEntries);
      for (let position = 0; position < end; position++) {
        if (this.differsAt(base, number * pageEntries + position)) {
          yield number * pageEntries + position;
        }
      }
    }
  }

  /** True when both maps have the same size, block size and entries. */
  equals(other: BlockMap): boolean {
    if (this.sizeBytes !== other.sizeBytes || this.blockSize !== other.blockSize) return false;
    if (this.#pages.size !== other.#pages.size) return false;
    for (const [number, page] of this.#pages) {
      const theirs = other.#pages.get(number);
      if (theirs === undefined) return false;
      if (page === theirs) continue;
      if (!bytesEqual(page.kinds, theirs.kinds) || !bytesEqual(page.refs, theirs.refs)) {
        return false;
      }
    }
    return true;
  }
}

const zeroEntry: MapEntry = Object.freeze({ kind: "zero" });
