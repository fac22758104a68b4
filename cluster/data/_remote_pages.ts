/**
 * Pages of objects the lease holder writes but does not hold a copy of (the
 * placement put them on other members: R < N), kept in memory so that reading
 * them again costs no round trip. Coherent because the holder is their only
 * writer: every change it makes goes through here (patched in, under the
 * object's lock, at the stamp it makes), and a page counts only while its
 * object's stamp is the writer's (a change that failed, a replica learnt
 * newer, a lease lost: the stamps part and the pages are dropped). A read that
 * misses fetches the aligned page around it, so neighbouring reads hit.
 * Bounded by bytes; the least recently used pages go first, and their
 * buffers take the next pages fetched: a fresh buffer pays a page fault on
 * every 4 KiB of it the first time it is written (2.6 ms a MiB on this kind of
 * machine, against 0.04 for a copy into memory in use: decisions.md, "Fetched
 * pages through reused buffers"), and a cache that evicts as it fills would
 * pay that for every page. Pages the cache has never had come from memory a
 * worker touched ahead when the node gives a toucher (_page_supply.ts).
 */
import { compareStamps, type Stamp } from "./object_link.ts";
import { PageSupply } from "./_page_supply.ts";

/** Bytes of one cached page (a read that misses fetches the page around it). */
export const remotePageBytes = 256 * 1024;
/** Default bound of the cache of one node. */
export const remotePagesBytesDefault = 1024 * 1024 * 1024;
/**
 * Buffers of pages let go kept for the next fills, at most this many bytes
 * (and no more than the cache's bound): memory the cache holds beyond it.
 */
const spareBytesMax = 16 * 1024 * 1024;

interface CachedObject {
  stamp: Stamp;
  pages: Map<number, CachedPage>;
}

/** A page and its place in the order of use (`key`: "NAME PAGE", made once). */
interface CachedPage {
  data: Uint8Array;
  name: string;
  page: number;
  key: string;
}

/** See the module doc. */
export class RemotePages {
  #objects = new Map<string, CachedObject>();
  /** Every cached page by its key, least recently used first. */
  #order = new Map<string, CachedPage>();
  #bytes = 0;
  #bytesMax: number;
  /** Buffers of pages evicted or dropped, for the next fills (see the module doc). */
  #spares: Uint8Array[] = [];
  readonly counters = { hits: 0, misses: 0 };
  #buffersMade = 0;

  #supply: PageSupply | null;

  /** `touchMemory`: writes each page of a buffer once on another thread (MemoryToucher). */
  constructor(
    bytesMax = remotePagesBytesDefault,
    touchMemory?: (buffer: SharedArrayBuffer) => Promise<void>,
  ) {
    this.#bytesMax = bytesMax;
    this.#supply = touchMemory === undefined ? null : new PageSupply(remotePageBytes, touchMemory);
  }

  /** True (and `into` filled) when every page of the range is cached at `stamp`. */
  read(name: string, stamp: Stamp, offset: number, into: Uint8Array): boolean {
    if (this.#bytesMax === 0) return false;
    const object = this.#objects.get(name);
    if (object === undefined || compareStamps(object.stamp, stamp) !== 0) {
      if (object !== undefined) this.drop(name);
      this.counters.misses++;
      return false;
    }
    const first = Math.floor(offset / remotePageBytes);
    const last = Math.floor((offset + into.length - 1) / remotePageBytes);
    for (let page = first; page <= last; page++) {
      if (!object.pages.has(page)) {
        this.counters.misses++;
        return false;
      }
    }
    for (let page = first; page <= last; page++) {
      const cached = object.pages.get(page)!;
      const start = page * remotePageBytes;
      const from = Math.max(offset, start);
      const to = Math.min(offset + into.length, start + remotePageBytes);
      into.set(cached.data.subarray(from - start, to - start), from - offset);
      this.#touch(cached);
    }
    this.counters.hits++;
    return true;
  }

  /** True when page `page` of `name` is cached at `stamp` (its use unchanged). */
  holds(name: string, stamp: Stamp, page: number): boolean {
    const object = this.#objects.get(name);
    return object !== undefined && compareStamps(object.stamp, stamp) === 0 &&
      object.pages.has(page);
  }

  /** The aligned range a miss of `length` bytes at `offset` fetches. */
  span(offset: number, length: number): { offset: number; length: number } {
    const start = Math.floor(offset / remotePageBytes) * remotePageBytes;
    const end = Math.ceil((offset + length) / remotePageBytes) * remotePageBytes;
    return { offset: start, length: end - start };
  }

  /** Keeps `data` (whole pages from `offset`, read from a replica at `stamp`). */
  fill(name: string, stamp: Stamp, offset: number, data: Uint8Array): void {
    if (this.#bytesMax === 0 || offset % remotePageBytes !== 0) return;
    let object = this.#objects.get(name);
    if (object !== undefined && compareStamps(object.stamp, stamp) !== 0) {
      this.drop(name);
      object = undefined;
    }
    if (object === undefined) this.#objects.set(name, object = { stamp, pages: new Map() });
    for (let at = 0; at + remotePageBytes <= data.length; at += remotePageBytes) {
      const page = (offset + at) / remotePageBytes;
      const bytes = data.subarray(at, at + remotePageBytes);
      const cached = object.pages.get(page);
      if (cached !== undefined) {
        cached.data.set(bytes);
        this.#touch(cached);
        continue;
      }
      const grow = this.#bytes + remotePageBytes <= this.#bytesMax;
      let kept = this.#spares.pop() ?? this.#supply?.take(grow) ?? null;
      if (kept === null) {
        kept = bytes.slice();
        this.#buffersMade++;
      } else kept.set(bytes);
      const added = { data: kept, name, page, key: `${name} ${page}` };
      object.pages.set(page, added);
      this.#bytes += remotePageBytes;
      this.#touch(added);
    }
    this.#evict();
  }

  /**
   * The writer changed `name` from `before` to `after` by writing `data` at
   * `offset`: pages cached at `before` take the bytes and move to `after`.
   */
  changed(name: string, before: Stamp, after: Stamp, offset: number, data: Uint8Array): void {
    const object = this.#objects.get(name);
    if (object === undefined) return;
    if (compareStamps(object.stamp, before) !== 0) return this.drop(name);
    object.stamp = after;
    const end = offset + data.length;
    for (const [page, cached] of object.pages) {
      const start = page * remotePageBytes;
      const from = Math.max(offset, start);
      const to = Math.min(end, start + remotePageBytes);
      if (from < to) cached.data.set(data.subarray(from - offset, to - offset), from - start);
    }
  }

  /** Forgets every page of `name`. */
  drop(name: string): void {
    const object = this.#objects.get(name);
    if (object === undefined) return;
    for (const cached of object.pages.values()) {
      this.#order.delete(cached.key);
      this.#spare(cached.data);
    }
    this.#bytes -= object.pages.size * remotePageBytes;
    this.#objects.delete(name);
  }

  /** Forgets every page of the objects of volume `uid` (its lease moved). */
  dropVolume(uid: string): void {
    for (const name of [...this.#objects.keys()]) if (name.startsWith(`${uid}.`)) this.drop(name);
  }

  /** True when `bytes` more can be kept without evicting anything. */
  hasRoom(bytes: number): boolean {
    return this.#bytesMax > 0 && this.#bytes + bytes <= this.#bytesMax;
  }

  /** Page buffers allocated so far (the others were reused, or touched ahead). */
  get buffersMade(): number {
    return this.#buffersMade;
  }

  /** Slabs of pages touched ahead (_page_supply.ts), and touches that failed. */
  get slabs(): { touched: number; failed: number } {
    // A copy: the supply's own counters are not for its readers to change.
    return { ...this.#supply?.counters ?? { touched: 0, failed: 0 } };
  }

  /** Bytes cached now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Makes `cached` the most recently used page. */
  #touch(cached: CachedPage): void {
    this.#order.delete(cached.key);
    this.#order.set(cached.key, cached);
  }

  /** Keeps `data`, a page's buffer let go, for the next fill (see spareBytesMax). */
  #spare(data: Uint8Array): void {
    const spareBytes = (this.#spares.length + 1) * remotePageBytes;
    if (spareBytes <= Math.min(spareBytesMax, this.#bytesMax)) this.#spares.push(data);
  }

  #evict(): void {
    for (const [key, { name, page }] of this.#order) {
      if (this.#bytes <= this.#bytesMax) return;
      this.#order.delete(key);
      const object = this.#objects.get(name);
      const cached = object?.pages.get(page);
      if (cached !== undefined) {
        object!.pages.delete(page);
        this.#bytes -= remotePageBytes;
        this.#spare(cached.data);
      }
      if (object?.pages.size === 0) this.#objects.delete(name);
    }
  }
}
