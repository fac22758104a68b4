/**
 * What a writer sees of one replica of volume objects (in process or over
 * RPC), and the stamps that order the copies of an object: the lease epoch of
 * its last writer, then the version (changes counted).
 */

/** Largest object a replica copies whole (a repair), and largest read. */
export const objectBytesMax = 32 * 1024 * 1024;

/**
 * Where a copy of an object stands: the lease epoch of its last writer, then the
 * version (changes counted). A new lease holder continues the count under a
 * higher epoch, so its changes order after anything an older holder wrote.
 */
export type Stamp = readonly [epoch: number, version: number];

/** Negative when a is older than b. */
export function compareStamps(a: Stamp, b: Stamp): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

/** One change to an object, as the writer sends it to every replica. */
export interface ObjectChange {
  epoch: number;
  /** The version the change produces (with `epoch`, the copy's new stamp). */
  version: number;
  /**
   * With `replace`, `data` is the whole object at [epoch, version], applied only
   * when newer than the copy. Otherwise the change applies only on top of
   * `version - 1` (and an epoch not below the copy's).
   */
  replace?: boolean;
  /** Writes `data` at `offset`; with `truncate`, on an emptied object. */
  offset: number;
  data: Uint8Array;
  truncate?: boolean;
  /** Deletes the object (its version stays, as a tombstone). */
  remove?: boolean;
  /**
   * The writer's lease epoch when it is above `epoch`: a replacement that brings
   * a replica up to a version an earlier holder wrote keeps that version's stamp,
   * and storage admits it by the writer's epoch (fencing).
   */
  fence?: number;
  /**
   * A replacement by healing (with `replace`), not by a writer: a copy that
   * exists elsewhere, applied only when newer, so it needs no lease epoch and
   * is not fenced. A snapshot's frozen objects keep the stamps of the holder
   * that wrote them; once a later holder raised the volume's fence, a fenced
   * copy could never reach a replica that lags (seed 10090 with joins: new
   * replicas took an older copy from a lagging one, and the newest, refused
   * everywhere, stayed off the placement while the replicas agreed on the old).
   */
  heal?: boolean;
  /**
   * The writer's placement of the object ({@linkcode placementDigest}): a
   * replica that places it elsewhere says so (`ChangeReply.moved`).
   */
  placement?: number;
}

/** What a replica answers to a change. */
export interface ChangeReply {
  applied: boolean;
  /** The copy's stamp after the change (or the one that made it refuse). */
  stamp: Stamp;
  /**
   * The replica places the object on other members than the writer does
   * (`ObjectChange.placement` differs from its own): their views of the
   * members differ, and a copy may sit where the writer does not look.
   */
  moved?: boolean;
}

/**
 * A digest of the members an object is placed on (their ids, in any order):
 * what a writer sends with a change (`ObjectChange.placement`) for the replica
 * to compare with its own placement. FNV-1a, 32 bits.
 */
export function placementDigest(ids: readonly string[]): number {
  const text = [...ids].sort().join(",");
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    hash ^= unit;
    hash = Math.imul(hash, 0x01000193) >>> 0;
    // A character outside the BMP counts by its first UTF-16 unit alone (as it always has).
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
  }
  return hash;
}

/** One replica of objects, reached in process or over RPC. */
export interface ObjectLink {
  readonly id: string;
  change(name: string, change: ObjectChange): Promise<ChangeReply>;
  /**
   * Reads `length` bytes at `offset` (length -1: the whole object) with the
   * copy's stamp. A replica in this process reads them into `into` when given
   * (of exactly `length` bytes), and `data` is then `into` itself; one reached
   * over the network returns a buffer of its own (a late answer must never
   * land in a buffer its caller may have reused), maybe a reused one: then the
   * caller, which copies `data` into `into`, gives it back with `release()`.
   */
  read(
    name: string,
    offset: number,
    length: number,
    into?: Uint8Array,
  ): Promise<{ data: Uint8Array; stamp: Stamp; release?: () => void }>;
  stamps(names: string[]): Promise<Stamp[]>;
  /**
   * Makes every applied change durable, versions included, and tells the
   * durable stamps of `names`: a replica that restarted and lost changes it had
   * taken says so here, instead of a flush that looks whole.
   */
  flush(names: string[]): Promise<Stamp[]>;
  /**
   * Tells this replica that it holds copies of `names` which other replicas
   * lack and the writer could not bring them (they did not answer): its
   * healing walks at its next pass and copies them on, instead of waiting for
   * an event it sees or its anti-entropy backstop (_object_flush.ts).
   */
  short(names: string[]): Promise<void>;
}

/**
 * Reads `into.length` bytes at `offset` from `link` into `into`, accepted only
 * when its copy is at `stamp`: true then; false when the copy is at another
 * stamp or the link fails (the caller reads the full way instead).
 */
export async function readAtStamp(
  link: ObjectLink,
  name: string,
  offset: number,
  into: Uint8Array,
  stamp: Stamp,
): Promise<boolean> {
  try {
    const read = await link.read(name, offset, into.length, into);
    try {
      if (compareStamps(read.stamp, stamp) !== 0) return false;
      if (read.data !== into) into.set(read.data);
      return true;
    } finally {
      read.release?.();
    }
  } catch {
    return false;
  }
}
