/**
 * New pages for the read cache (_remote_pages.ts) in memory a worker thread
 * wrote once ahead of need: the first write of each page of a fresh buffer
 * costs the event loop 2.6 ms a MiB on this kind of machine, a page another
 * thread of the process wrote first 0.05 (docs/decisions.md, "Pages of the
 * read cache touched ahead"). Slabs of {@linkcode slabPages} pages, shared
 * buffers, are touched one at a time while the cache may still grow: at most
 * one slab waits ready and one is being touched beyond what the cache holds
 * (32 MiB). With no toucher (the simulation), or none ready yet, the cache
 * makes its pages as before; a touch that fails (the worker died) lets its
 * slab go and the next one starts another worker.
 */

/** Pages of one slab (16 MiB of 256 KiB pages). */
export const slabPages = 64;

interface Slab {
  buffer: SharedArrayBuffer;
  /** The next page to hand out. */
  next: number;
}

/** See the module doc. */
export class PageSupply {
  readonly #pageBytes: number;
  readonly #touch: (buffer: SharedArrayBuffer) => Promise<void>;
  #ready: Slab | null = null;
  #touching = false;
  /** Slabs touched, and touches that failed (their slab is let go). */
  readonly counters = { touched: 0, failed: 0 };

  constructor(pageBytes: number, touch: (buffer: SharedArrayBuffer) => Promise<void>) {
    this.#pageBytes = pageBytes;
    this.#touch = touch;
  }

  /**
   * A page of touched memory (zeros), or null when none is ready. `grow`: the
   * cache may still grow, so the next slab is touched once this one is taken.
   */
  take(grow: boolean): Uint8Array | null {
    const slab = this.#ready;
    let page: Uint8Array | null = null;
    if (slab !== null) {
      page = new Uint8Array(slab.buffer, slab.next * this.#pageBytes, this.#pageBytes);
      if (++slab.next === slabPages) this.#ready = null;
    }
    if (grow && this.#ready === null && !this.#touching) this.#prepare();
    return page;
  }

  #prepare(): void {
    this.#touching = true;
    const buffer = new SharedArrayBuffer(slabPages * this.#pageBytes);
    this.#touch(buffer).then(
      () => {
        this.counters.touched++;
        this.#ready = { buffer, next: 0 };
      },
      () => this.counters.failed++,
    ).finally(() => this.#touching = false);
  }
}
