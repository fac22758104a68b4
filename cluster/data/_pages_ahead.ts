/**
 * The rest of an object held elsewhere, fetched a page at a time in the
 * background once a read missed one of its pages (_copy_reads.ts). A VM reads
 * the objects it boots from all over: a fresh clone at R < N paid a round trip
 * to a replica's cold copy for each of the 16 pages of every object it read,
 * where the pages fetched ahead cost one. The fetches ahead never hold a read
 * up: one at a time for the whole node, each asked only while no read waits
 * for a page (a read that misses meanwhile is the next call on the link, not
 * queued behind several), and only while the cache has room (they never evict
 * a page a read put there). A page is kept only when its copy answers at the
 * stamp the reads want then (as a missed page is: the writer's own change may
 * have crossed the fetch); any other answer, or a failure, ends the object's
 * fetches ahead, as the volume's lease moving does (forgetVolume). At most
 * {@linkcode objectsAheadMax} objects wait; the oldest is let go first.
 */
import type { BufferPool } from "../../core/mod.ts";
import { compareStamps, type ObjectLink, type Stamp } from "./object_link.ts";
import { remotePageBytes, type RemotePages } from "./_remote_pages.ts";

/** Objects waiting for their pages to be fetched ahead, at most. */
export const objectsAheadMax = 64;

interface Ahead {
  link: ObjectLink;
  /** The stamp the reads of the object want now. */
  wanted: () => Stamp;
  /** Pages of the object (its extent in pages). */
  pages: number;
  /** The next page to look at, and how many are left to look at. */
  next: number;
  left: number;
}

/** See the module doc. */
export class PagesAhead {
  #pages: RemotePages;
  #spans: BufferPool;
  #objects = new Map<string, Ahead>();
  /** Fetches that reads wait for, under way. */
  #waited = 0;
  #fetching = false;
  #fetched = 0;

  constructor(pages: RemotePages, spans: BufferPool) {
    this.#pages = pages;
    this.#spans = spans;
  }

  /** Pages fetched ahead and kept so far (for /metrics). */
  get fetched(): number {
    return this.#fetched;
  }

  /** A fetch a read waits for starts: nothing is fetched ahead until it ends. */
  waitedStarts(): void {
    this.#waited++;
  }

  waitedEnds(): void {
    this.#waited--;
    this.#pump();
  }

  /**
   * A read missed page `page` of `name` and fetched it from `link`: fetch the
   * other pages of its `extent` bytes too, from the one after it on.
   */
  missed(link: ObjectLink, name: string, wanted: () => Stamp, page: number, extent: number): void {
    const pages = Math.ceil(extent / remotePageBytes);
    if (pages <= 1 || this.#objects.has(name)) return;
    if (this.#objects.size >= objectsAheadMax) {
      this.#objects.delete(this.#objects.keys().next().value!);
    }
    this.#objects.set(name, { link, wanted, pages, next: (page + 1) % pages, left: pages - 1 });
    this.#pump();
  }

  /** Lets go of the objects of volume `uid` waiting (a fetch under way is kept or not as ever). */
  forgetVolume(uid: string): void {
    for (const name of [...this.#objects.keys()]) {
      if (name.startsWith(`${uid}.`)) this.#objects.delete(name);
    }
  }

  #pump(): void {
    if (this.#fetching || this.#waited > 0) return;
    for (const [name, ahead] of this.#objects) {
      const page = this.#nextMissing(name, ahead);
      if (page === null) {
        this.#objects.delete(name);
        continue;
      }
      if (!this.#pages.hasRoom(remotePageBytes)) return this.#objects.clear();
      this.#fetching = true;
      this.#fetchPage(name, ahead, page).finally(() => {
        this.#fetching = false;
        this.#pump();
      });
      return;
    }
  }

  /**
   * The next page of `name` the cache lacks at the stamp wanted (each page is
   * looked at once); null when none is left.
   */
  #nextMissing(name: string, ahead: Ahead): number | null {
    const stamp = ahead.wanted();
    while (ahead.left > 0) {
      const page = ahead.next;
      ahead.next = (page + 1) % ahead.pages;
      ahead.left--;
      if (!this.#pages.holds(name, stamp, page)) return page;
    }
    return null;
  }

  async #fetchPage(name: string, ahead: Ahead, page: number): Promise<void> {
    const through = this.#spans.acquire(remotePageBytes);
    try {
      const offset = page * remotePageBytes;
      const read = await ahead.link.read(name, offset, remotePageBytes, through);
      try {
        if (this.#objects.get(name) !== ahead) return; // its volume was forgotten meanwhile
        if (compareStamps(read.stamp, ahead.wanted()) !== 0) {
          this.#objects.delete(name);
          return;
        }
        // Reads filled pages meanwhile: a page ahead never takes the place of theirs.
        if (!this.#pages.hasRoom(remotePageBytes)) return this.#objects.clear();
        this.#pages.fill(name, read.stamp, offset, read.data);
        this.#fetched++;
      } finally {
        read.release?.();
      }
    } catch {
      this.#objects.delete(name);
    } finally {
      this.#spans.release(through);
    }
  }
}
