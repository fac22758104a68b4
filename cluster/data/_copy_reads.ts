/**
 * Reads of one copy of an object for a writer or a reader under a view
 * (_object_reads.ts): straight into the caller's buffer, or through the
 * aligned pages around the range, fetched from another member and kept
 * (_remote_pages.ts).
 */
import { BufferPool } from "../../core/mod.ts";
import { compareStamps, type ObjectLink, type Stamp } from "./object_link.ts";
import { remotePageBytes, type RemotePages } from "./_remote_pages.ts";
import { PagesAhead } from "./_pages_ahead.ts";

/**
 * Buffers the pages around a read are fetched through, kept for the next
 * fetch: the pages are copied out of them, and a fresh buffer per fetch paid
 * first-touch page faults on every byte (2.6 ms a MiB here, more than the
 * fetch: decisions.md, "Fetched pages through reused buffers").
 */
const spanPoolBytesMax = 16 * 1024 * 1024;
/** Larger spans (rare: a read of more than 4 MiB) take a buffer of their own. */
const spanPooledBytesEach = 4 * 1024 * 1024;

/** See the module doc. */
export class CopyReads {
  #pages: RemotePages;
  #spans = new BufferPool(spanPoolBytesMax, spanPooledBytesEach);
  /** The rest of an object whose page a read missed, fetched in the background. */
  readonly ahead: PagesAhead;

  constructor(pages: RemotePages) {
    this.#pages = pages;
    this.ahead = new PagesAhead(pages, this.#spans);
  }

  /**
   * Reads the range from `link`, a current replica, into `into`: straight
   * (this node's own copy, or a large read: through a reused buffer if remote),
   * or through the aligned pages around it, which are kept (_remote_pages.ts).
   * False when the copy does not hold the writer's stamp (it lags now: no
   * longer counted current, or a change crossed the read); a straight read
   * that failed is false too, a fetch of pages throws: either way the caller
   * tries the next current replica.
   */
  async read(
    link: ObjectLink,
    name: string,
    written: { stamp: Stamp; current: Set<string> },
    offset: number,
    into: Uint8Array,
    through: "pages" | "straight",
    extent?: number,
  ): Promise<boolean> {
    const expected = written.stamp;
    if (through === "pages") {
      const wanted = () => written.stamp;
      const { filled, stamp } = await this.fetchPages(link, name, wanted, offset, into, extent);
      if (!filled) lagsBehind(written, link.id, stamp, expected);
      return filled;
    }
    try {
      const { data, stamp, release } = await link.read(name, offset, into.length, into);
      if (compareStamps(stamp, written.stamp) !== 0) {
        release?.();
        lagsBehind(written, link.id, stamp, expected);
        return false;
      }
      if (data !== into) into.set(data);
      release?.();
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Reads the aligned pages around the range from `link`, a member's copy;
   * when it answers at `wanted()` (asked once the answer is in: the writer's
   * own change may have crossed the read, so the stamp it wants moved too),
   * fills `into` and keeps the pages (_remote_pages.ts), and with `extent`
   * (the most bytes the object holds), has the rest of the object fetched in
   * the background (_pages_ahead.ts). Returns whether it did, and the stamp the
   * copy answered with.
   */
  async fetchPages(
    link: ObjectLink,
    name: string,
    wanted: () => Stamp,
    offset: number,
    into: Uint8Array,
    extent?: number,
  ): Promise<{ filled: boolean; stamp: Stamp }> {
    const span = this.#pages.span(offset, into.length);
    // A remote link answers in a reused buffer of its own when given one to fill (the
    // link in this process fills this one).
    const through = this.#spans.acquire(span.length);
    let read;
    // Nothing is fetched ahead from now until these pages are kept (_pages_ahead.ts).
    this.ahead.waitedStarts();
    try {
      read = await link.read(name, span.offset, span.length, through);
    } catch (error) {
      this.#spans.release(through);
      this.ahead.waitedEnds();
      throw error;
    }
    try {
      if (compareStamps(read.stamp, wanted()) !== 0) return { filled: false, stamp: read.stamp };
      const at = offset - span.offset;
      into.set(read.data.subarray(at, at + into.length));
      this.#pages.fill(name, read.stamp, span.offset, read.data);
      if (extent !== undefined) {
        const last = (span.offset + span.length) / remotePageBytes - 1;
        this.ahead.missed(link, name, wanted, last, extent);
      }
      return { filled: true, stamp: read.stamp };
    } finally {
      read.release?.();
      this.#spans.release(through);
      this.ahead.waitedEnds();
    }
  }
}

/**
 * A current replica's read came back at `stamp`, not the writer's: below what
 * the writer had when the read started (`expected`), it lost what it took (it
 * restarted before a flush) and lags now; otherwise a change of this writer
 * crossed the read, and the replica stays current (taking it for lagging cost
 * a whole copy of the object at the next write).
 */
function lagsBehind(
  written: { current: Set<string> },
  id: string,
  stamp: Stamp,
  expected: Stamp,
): void {
  if (compareStamps(stamp, expected) < 0) written.current.delete(id);
}
