/**
 * Reads of objects across their replicas (ReplicatedObjects.read): the writer
 * reads from the replicas it knows current (objects it holds no copy of from
 * the pages it keeps of them, _remote_pages.ts), a reader under a view from
 * where a read found the newest copy (_settled_reads.ts), anyone else the
 * newest copy the replicas hold, checked against its floor (_replica_copies.ts).
 */
import { type ReadObjectOptions, WritesLostError } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import { compareStamps, type ObjectLink, readAtStamp, type Stamp } from "./object_link.ts";
import type { SettledReads } from "./_settled_reads.ts";
import type { WrittenObjects } from "./_written_objects.ts";
import type { Unflushed } from "./_unflushed.ts";
import type { FloorScope } from "./_floor_cache.ts";
import type { RemotePages } from "./_remote_pages.ts";
import { CopyReads } from "./_copy_reads.ts";
import { readNewest, ReplicaQuorumError } from "./_replica_copies.ts";
import { adopt } from "./_replica_learning.ts";
import type { ObjectCounters, ReplicatedObjectsOptions } from "./replicated_objects.ts";

/**
 * Reads of objects held elsewhere this long or longer evict nothing from the
 * page cache: once it is full they are read into the caller's buffer and not
 * kept (a sequential pass over more than the cache evicts every page before its
 * next use, each at a copy and an allocation). Above the simulation's largest
 * read, so its schedules do not change.
 */
export const uncachedReadBytes = 256 * 1024;

/**
 * Objects whose newest copy a look over every live member found, remembered
 * (the oldest is forgotten first).
 */
export const lookedMax = 65_536;

/** The state reads work on, shared with their ReplicatedObjects. */
export interface ObjectReadsParts {
  options: ReplicatedObjectsOptions;
  counters: ObjectCounters;
  writers: WrittenObjects;
  unflushed: Unflushed;
  views: SettledReads;
  pages: RemotePages;
}

/** See the module doc. */
export class ObjectReads {
  #options: ReplicatedObjectsOptions;
  #counters: ObjectCounters;
  #writers: WrittenObjects;
  #unflushed: Unflushed;
  #views: SettledReads;
  #pages: RemotePages;
  #copies: CopyReads;
  /**
   * The stamp a look over every live member found for a frozen object (scope
   * "frozen": no writer changes it any more) or for an object this node holds
   * the lease of and has not written (scope "held EPOCH": only it writes the
   * object while the epoch lasts): later reads need no look, and no older copy.
   */
  #looked = new Map<string, { scope: string; stamp: Stamp; from: string }>();

  constructor(parts: ObjectReadsParts) {
    this.#options = parts.options;
    this.#counters = parts.counters;
    this.#writers = parts.writers;
    this.#unflushed = parts.unflushed;
    this.#views = parts.views;
    this.#pages = parts.pages;
    this.#copies = new CopyReads(parts.pages);
  }

  /** ReplicatedObjects.read. */
  async run(
    name: string,
    offset: number,
    into: Uint8Array,
    options: ReadObjectOptions = {},
  ): Promise<void> {
    const { existing = false, view, frozen = false, orphaned = false, extent } = options;
    if (this.#unflushed.takeUnheard(name)) throw new WritesLostError([name]);
    const written = this.#writers.get(name);
    // What this node knows as the writer is the truth only while its lease is
    // confirmed: a holder cut off and taken over, not told yet, read a snapshot
    // the new holder took from its own stale copy (seed 150057 with joins).
    const uid = parseObjectName(name).uid;
    const trusted = this.#options.trustsWriter?.(uid) ?? true;
    const writes = written !== undefined && trusted;
    // The writer's own copy, current and placed here, is the first the loop below reads:
    // read it without placing the object's other replicas (a lease holder's every read).
    const own = writes && !written.stale && written.current.has(this.#options.selfId)
      ? this.#options.ownReplica?.(name) ?? null
      : null;
    if (own !== null && await this.#copies.read(own, name, written!, offset, into, "straight")) {
      return;
    }
    const links = this.#writers.ordered(this.#options.replicasOf(name));
    // Objects this node writes are read from their current replicas (below); under a
    // view, the others from where a read found them newest.
    if (!writes && view !== undefined) {
      if (await this.#readSettled(view, name, offset, into, links, extent)) return;
    }
    if (writes && !written.stale) {
      const remote = !written.current.has(this.#options.selfId);
      if (remote && this.#pages.read(name, written.stamp, offset, into)) return;
      for (const link of links.filter((link) => link !== own && written.current.has(link.id))) {
        try {
          // Another member's copy through the pages around the range, kept (_remote_pages.ts);
          // this node's own copy, or a large read once the cache is full (it would evict pages
          // before their next use), straight into `into` (through a reused buffer if remote).
          const direct = link.id === this.#options.selfId ||
            (into.length >= uncachedReadBytes && !this.#pages.hasRoom(into.length));
          const through = direct ? "straight" : "pages";
          if (await this.#copies.read(link, name, written, offset, into, through, extent)) {
            return;
          }
        } catch {
          // try the next current replica
        }
      }
    }
    // Not the writer (or its replicas failed): read the copy with the highest stamp.
    const acked = written?.acked ?? [0, 0];
    const epoch = trusted ? this.#options.epochOf(uid) : 0;
    const scope: FloorScope = frozen
      ? { kind: "frozen" }
      : view !== undefined && !writes
      ? { kind: "view", view }
      : epoch > 0
      ? { kind: "writer", epoch }
      : { kind: "once" };
    const lookup = this.#writers.lookup(name, scope);
    // A frozen object read by a node that did not write it: its last writer placed it by
    // its own view of the members, and replicas of this node's placement may agree on an
    // older copy healing spread before that writer's last flush (seed 950276 with joins,
    // leaves and replacements: a new holder copied a block up from two replicas new to a
    // snapshot's object, both at the version before the last flushed one). The first read
    // asks the other live members too; later ones need a copy at least that new. So does
    // a lease holder's first read of an object it has not written under its lease (seed
    // 1334158 with joins, leaves and replacements: the last holder, a join behind, wrote
    // and flushed it on the replicas of its view; the new holder's two replicas, new to the
    // object, agreed on the version healing had copied to them before).
    // An object this node holds the lease of (and trusts it) and has not written.
    const held = view === undefined && !writes && !frozen && epoch > 0;
    const lookScope = view !== undefined || writes
      ? null
      : frozen
      ? "frozen"
      : held
      ? `held ${epoch}`
      : null;
    const looked = lookScope === null ? undefined : this.#looked.get(name);
    const seen = looked !== undefined && looked.scope === lookScope ? looked.stamp : undefined;
    const lookFirst = lookScope !== null && seen === undefined;
    // A holder's later reads of an object it has not written under its lease go to the
    // member whose copy the first look took: only this holder changes the object while its
    // epoch lasts, so a copy still at that stamp is still the newest (as a writer reads its
    // current replicas, above). Any other answer, or none, takes the full read below.
    if (seen !== undefined && held) {
      if (await this.#readHeld(name, links, looked!.from, seen, offset, into)) return;
    }
    // A read under a view is remembered for the view's life: its first lookup asks the
    // other live members too, since the last writer placed the object by its own view
    // of the members, which may not be this node's (as seed 710480 found for a writer
    // gone without releasing, _holder_reads.ts).
    const seenBefore = written?.seen;
    const newest = await readNewest(name, links, offset, into, lookup, {
      atLeast: seen !== undefined && compareStamps(seen, acked) > 0 ? seen : acked,
      // What the writer found durable or was handed, or what this holder read before: waited
      // for while a member gone in the last ten grace periods may hold it. A frozen copy read
      // before may be a version no flush made durable, and is waited for only within one grace,
      // as placement waits for a dead member (seed 10014446 with joins, leaves and
      // replacements: a taken-over writer's unflushed change, frozen by the next holder's
      // snapshot, reached one replica, which died for good; the node that had read it refused
      // the snapshot for ten grace periods while every other node served the version before).
      durable: newestStamp(written?.seen ?? [0, 0], frozen ? [0, 0] : seen ?? [0, 0]),
      read: frozen ? seen : undefined,
      existing,
      everywhere: orphaned && !writes,
      elsewhere: (view !== undefined && !writes) || lookFirst,
    });
    // A version waited for that the read gave up (no member that may hold it was away) is
    // not waited for again: this node serves the one it took now (seed 10050468 with joins,
    // leaves and replacements: a new holder read its predecessor's unflushed change, which
    // both its copies then lost in restarts; the holder served the version before, and when
    // one of those members later died for good, refused it for ten grace periods).
    const gaveUp = seen !== undefined && compareStamps(newest.stamp, seen) < 0;
    if (lookFirst || gaveUp) {
      if (held) await adopt(name, newest, links, this.#writers.quorumOf(links), epoch);
      this.#remember(name, lookScope!, newest.stamp, newest.from.id);
    }
    if (written !== undefined && written.seen === seenBefore) {
      if (compareStamps(newest.stamp, seenBefore) < 0) written.seen = newest.stamp;
    }
    if (newest.staleFirst) this.#counters.staleReads++;
    if (view !== undefined && !writes) this.#views.found(view, name, newest);
    if (written !== undefined && compareStamps(newest.stamp, acked) < 0) {
      // The writer knows better than the replicas that answered.
      if (!newest.everyone) {
        throw new ReplicaQuorumError(
          `Cannot read object ${name}: the replicas holding its latest writes do not answer`,
        );
      }
      this.#writers.writesLost(name, written);
    }
  }

  /** Stops fetching ahead the pages of volume `uid`'s objects (another node writes it now). */
  forgetVolume(uid: string): void {
    this.#copies.ahead.forgetVolume(uid);
  }

  /** Pages of objects held elsewhere fetched ahead of reads and kept (_pages_ahead.ts). */
  get pagesAhead(): number {
    return this.#copies.ahead.fetched;
  }

  #remember(name: string, scope: string, stamp: Stamp, from: string): void {
    this.#looked.delete(name);
    if (this.#looked.size >= lookedMax) {
      this.#looked.delete(this.#looked.keys().next().value!);
    }
    this.#looked.set(name, { scope, stamp, from });
  }

  /**
   * Reads the range from member `from` (a replica of `links`, or another live
   * member the first look found the copy on); true when its copy is at `stamp`.
   */
  async #readHeld(
    name: string,
    links: ObjectLink[],
    from: string,
    stamp: Stamp,
    offset: number,
    into: Uint8Array,
  ): Promise<boolean> {
    const link = links.find((link) => link.id === from) ??
      this.#options.everyone?.().find((link) => link.id === from);
    if (link === undefined || !(await readAtStamp(link, name, offset, into, stamp))) return false;
    this.#counters.heldReads++;
    return true;
  }

  /**
   * Reads `name` under `view` from the copy a read under it found newest
   * (_settled_reads.ts); one on another member through the pages kept of it at
   * that stamp. False when there is none, or it is no longer at that stamp
   * (the next read looks again).
   */
  async #readSettled(
    view: string,
    name: string,
    offset: number,
    into: Uint8Array,
    links: ObjectLink[],
    extent?: number,
  ): Promise<boolean> {
    const found = this.#views.get(view, name);
    if (found === undefined) return false;
    const remote = found.link !== this.#options.selfId;
    if (remote && this.#pages.read(name, found.stamp, offset, into)) return true;
    const link = links.find((link) => link.id === found.link);
    const direct = !remote ||
      (into.length >= uncachedReadBytes && !this.#pages.hasRoom(into.length));
    try {
      if (
        link !== undefined && direct && await readAtStamp(link, name, offset, into, found.stamp)
      ) {
        return true;
      }
      if (link !== undefined && !direct) {
        const wanted = () => found.stamp;
        if ((await this.#copies.fetchPages(link, name, wanted, offset, into, extent)).filled) {
          return true;
        }
      }
    } catch {
      // unreachable now: look again
    }
    this.#views.forget(view, name);
    return false;
  }
}

/** The higher of two stamps. */
function newestStamp(a: Stamp, b: Stamp): Stamp {
  return compareStamps(a, b) >= 0 ? a : b;
}
