/**
 * The I/O limiters of one node: one per volume, shared by every connection to
 * it here, and outliving the volume's instances (an instance is replaced when
 * the write lease moves; the connections keep their limiter). The limits come
 * from the volume's record: each time this node reads or writes a record, the
 * limiter of that volume takes the limits the record names, so they follow the
 * volume to whichever node serves it.
 */
import { IoLimiter } from "./io_limiter.ts";
import { isUnlimited } from "./qos.ts";
import type { VolumeHeader } from "./records.ts";

/** A limiter, and the record whose limits it enforces. */
interface Entry {
  limiter: IoLimiter;
  uid: string | null;
  version: number;
}

/** The limiters of one node's volumes, by volume name. */
export class IoLimiters {
  #entries = new Map<string, Entry>();

  /** The limiter of volume `name` (made on first use, with no limits until a record names some). */
  of(name: string): IoLimiter {
    let entry = this.#entries.get(name);
    if (entry === undefined) {
      entry = { limiter: new IoLimiter(), uid: null, version: 0 };
      this.#entries.set(name, entry);
    }
    return entry.limiter;
  }

  /**
   * The record of `name` at `version` (read or just written here) has `header`:
   * its limiter enforces the limits it names, unless it already took them from
   * a later version of the same volume (reads that finish out of order). A
   * volume without limits gets no limiter until one is asked for.
   */
  note(name: string, header: VolumeHeader, version: number): void {
    const entry = this.#entries.get(name);
    if (entry === undefined) {
      if (isUnlimited(header.qos)) return;
      const limiter = new IoLimiter(header.qos);
      this.#entries.set(name, { limiter, uid: header.uid, version });
      return;
    }
    if (entry.uid === header.uid && entry.version > version) return;
    entry.uid = header.uid;
    entry.version = version;
    entry.limiter.set(header.qos ?? {});
  }

  /** Volume `name` was deleted: its waiting requests go (to fail), and its limiter is forgotten. */
  forget(name: string): void {
    this.#entries.get(name)?.limiter.set({});
    this.#entries.delete(name);
  }
}
