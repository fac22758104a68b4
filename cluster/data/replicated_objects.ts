/**
 * Volume objects across the cluster, from the side of the node that writes or
 * reads them. Objects are mutable, so unlike blocks a copy cannot vouch for
 * itself: each change advances the object's version on every replica it reaches
 * (see object_service.ts), and the writer remembers which replicas hold the
 * latest version ("current"). A replica that missed a change (unreachable,
 * restarted) falls out of the current set and is brought back by a whole-object
 * replacement; a write succeeds once a write quorum of the replicas holds it, a
 * flush once a write quorum holds it durably. The quorum is a majority, lowered
 * to R - floor(R/2) by replicas gossip declares dead (R = 2: one copy while the
 * other replica is dead); _write_quorum.ts gives the rule and its residual risks.
 * A replica that comes back behind is brought up (replaced whole) before the
 * writer's next change or flush counts it.
 *
 * A node that did not write an object reads the copy with the highest version,
 * so it sees every change a writer had acknowledged at a quorum.
 *
 * The writer never takes what it acknowledged for durable when it is not: an
 * object a flush could not make durable is tried again by every later flush,
 * and when every replica answers and none holds the writer's last acknowledged
 * version (they all restarted before a flush reached them), the writer says so
 * (WritesLostError, on the read or write that finds it, and on the volume's
 * next flush whoever found it) instead of
 * serving or extending an older copy as if it were the latest. A change that
 * reached only replicas that stopped answering is never overtaken by another
 * change under the same stamp (_replica_learning.ts, learnWhereItStands).
 *
 * Sending a change to the replicas is _object_changes.ts; reads,
 * _object_reads.ts; the flush, _object_flush.ts.
 */
import { KeyedMutex } from "../../core/_mutex.ts";
import { type ReadObjectOptions, WritesLostError } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import type { ObjectChange, ObjectLink } from "./object_link.ts";
import { SettledReads } from "./_settled_reads.ts";
import { WrittenObjects } from "./_written_objects.ts";
import { Unflushed } from "./_unflushed.ts";
import { noFloors, type ObjectFloors } from "./object_floors.ts";
import { FloorCache } from "./_floor_cache.ts";
import { ReplicaQuorumError } from "./_replica_copies.ts";
import { ObjectFlush } from "./_object_flush.ts";
import { RemotePages, remotePagesBytesDefault } from "./_remote_pages.ts";
import { ObjectReads } from "./_object_reads.ts";
import { changeReplicas, type ObjectChangeParts } from "./_object_changes.ts";
import { EarlyFlushes } from "./_early_flushes.ts";

export { ReplicaQuorumError };

/** Options of {@linkcode ReplicatedObjects}. */
export interface ReplicatedObjectsOptions {
  /** This node's replica id: read from it first when it holds a copy. */
  selfId: string;
  /** The replicas of an object, in placement order. */
  replicasOf: (name: string) => ObjectLink[];
  /**
   * This node's own replica when the placement puts `name` on this node (the
   * link replicasOf names for it), else null: a writer reads its own current
   * copy without placing the others. None: every read places them.
   */
  ownReplica?: (name: string) => ObjectLink | null;
  /** The writer's lease epoch for a volume (fencing; 1 until leases exist). */
  epochOf: (uid: string) => number;
  /** True when gossip declares the member dead (lowers the write quorum); none by default. */
  isDead?: (id: string) => boolean;
  /** Where floors are kept (object_floors.ts); none by default (nothing is ever dead then). */
  floors?: ObjectFloors;
  /** A link to every live member (copies off the placement); none by default. */
  everyone?: () => ObjectLink[];
  /**
   * A link to every member gossip called dead or gone lately: a look that must hear every
   * member that may hold an object's newest copy asks them too, without waiting
   * for those that do not answer (_copies_elsewhere.ts, stampsElsewhere); none by default.
   */
  seenGone?: () => ObjectLink[];
  /**
   * The ids of those of them gossip called dead or gone within one dead grace: a
   * version a node only read is waited for from them alone (_object_reads.ts).
   */
  goneWithinGrace?: () => string[];
  /**
   * Members gossip calls dead or gone for longer than `seenGone` lists them, that
   * no operator declared lost: versions known durable are waited for from them
   * too (data/_copy_checks.ts, checkAwayUnlessLost). None when not given.
   */
  longGone?: () => string[];
  /**
   * How many of `name`'s replicas, placed over the members including those gossip
   * calls gone and no operator declared lost, are gone (_copy_checks.ts,
   * checkGone); none by default.
   */
  goneReplicas?: (name: string) => Promise<number>;
  /**
   * True when an operator declared every one of `ids` lost: a floor only they
   * held no longer binds (object_floors.ts, Floor); never, by default.
   */
  allLost?: (ids: string[]) => Promise<boolean>;
  /**
   * False when what this node knows as the writer of volume `uid`'s objects
   * may be stale (its lease not confirmed lately: leases/_held_leases.ts,
   * `trusted`); reads then ask the replicas. Always true by default.
   */
  trustsWriter?: (uid: string) => boolean;
  /**
   * Bytes of pages of objects this node writes without holding a copy that it
   * keeps in memory (_remote_pages.ts); 256 MiB by default, 0 for none.
   */
  remotePagesBytes?: number;
  /**
   * Writes each page of a buffer once on another thread (wasm/ MemoryToucher):
   * the pages of that cache are then taken from memory touched ahead
   * (_page_supply.ts); without it, fresh buffers.
   */
  touchMemory?: (buffer: SharedArrayBuffer) => Promise<void>;
  /**
   * Flushes started as a write ends, ahead of a client that flushes after its
   * writes (_early_flushes.ts); off by default (the cluster engine turns them on).
   */
  earlyFlushes?: boolean;
}

/** Counters an operator sees in /metrics. */
export interface ObjectCounters {
  writes: number;
  laggards: number;
  repairs: number;
  staleReads: number;
  /** Reads by a lease holder of objects it has not written, from the copy its first look took. */
  heldReads: number;
}

/** Writes, reads and flushes objects on their replicas. */
export class ReplicatedObjects {
  readonly counters: ObjectCounters = {
    writes: 0,
    laggards: 0,
    repairs: 0,
    staleReads: 0,
    heldReads: 0,
  };
  #options: ReplicatedObjectsOptions;
  #locks = new KeyedMutex();
  /** What is not durable yet, and losses waiting to be heard (_unflushed.ts). */
  #unflushed = new Unflushed();
  /** Where reads under a view found each object (reads of volumes nobody may write). */
  #views = new SettledReads();
  #background = new Set<Promise<void>>();
  /** Floors as reads check them (_floor_cache.ts). */
  #floors: FloorCache;
  /** Pages of objects this node writes on other members only (_remote_pages.ts). */
  #pages: RemotePages;

  #writers: WrittenObjects;
  #flush: ObjectFlush;
  #reads: ObjectReads;
  /** What a change works with (_object_changes.ts). */
  #changeParts: ObjectChangeParts;
  /** Flushes started ahead of a client's FLUSH (_early_flushes.ts); null when off. */
  #early: EarlyFlushes | null;

  constructor(options: ReplicatedObjectsOptions) {
    this.#options = options;
    this.#floors = new FloorCache(options.floors ?? noFloors, options.allLost);
    this.#pages = new RemotePages(
      options.remotePagesBytes ?? remotePagesBytesDefault,
      options.touchMemory,
    );
    this.#writers = new WrittenObjects(options, this.counters, {
      unflushed: this.#unflushed,
      views: this.#views,
      floors: this.#floors,
    });
    this.#flush = new ObjectFlush({
      options,
      writers: this.#writers,
      unflushed: this.#unflushed,
      locks: this.#locks,
      background: this.#background,
      floors: this.#floors,
    });
    this.#changeParts = {
      options,
      counters: this.counters,
      writers: this.#writers,
      unflushed: this.#unflushed,
    };
    this.#early = options.earlyFlushes !== true ? null : new EarlyFlushes((uid) => {
      const task = this.#flush.run(uid, { early: true });
      this.#background.add(task);
      return task.finally(() => this.#background.delete(task));
    });
    this.#reads = new ObjectReads({
      options,
      counters: this.counters,
      writers: this.#writers,
      unflushed: this.#unflushed,
      views: this.#views,
      pages: this.#pages,
    });
  }

  /**
   * Writes `data` at `offset` (with `truncate`, on an emptied object).
   * `existing`: the object was written before (a write in place), so finding
   * no copy of it anywhere means its replicas do not answer, not that it is new.
   * `epoch`: the lease epoch the writing volume instance holds (Engine.writeObject).
   */
  write(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; existing?: boolean; epoch?: number } = {},
  ): Promise<void> {
    const truncate = options.truncate ?? false;
    if (this.#unflushed.takeUnheard(name)) return Promise.reject(new WritesLostError([name]));
    const change = this.#locks.run(
      name,
      () =>
        this.#change(name, { offset, data, truncate }, options.existing ?? false, options.epoch),
    );
    const early = this.#early;
    if (early === null) return change;
    const { uid } = parseObjectName(name);
    early.writing(uid);
    change.then(() => early.wrote(uid, true), () => early.wrote(uid, false));
    return change;
  }

  /** Deletes an object everywhere it is stored; `epoch` as for write. */
  delete(name: string, options: { epoch?: number } = {}): Promise<void> {
    return this.#locks.run(
      name,
      () =>
        this.#change(
          name,
          { offset: 0, data: new Uint8Array(), remove: true },
          false,
          options.epoch,
        ),
    );
  }

  /**
   * Reads `into.length` bytes at `offset` from a replica holding the latest
   * version (_object_reads.ts). Throws WritesLostError when this node
   * acknowledged writes of the object that no replica holds any more.
   * `existing`, `view`, `frozen`, `orphaned`, `extent`: see Engine.readObject.
   */
  read(
    name: string,
    offset: number,
    into: Uint8Array,
    options: ReadObjectOptions = {},
  ): Promise<void> {
    return this.#reads.run(name, offset, into, options);
  }

  /**
   * Makes every change that resolved before this call durable on a write quorum
   * of its object's replicas (with `uid`, at least the changes of that volume's
   * objects), bringing lagging replicas up first when the others fall short
   * (e.g. one came back from the dead since the write); then brings the
   * remaining laggards up, in the background. An object it cannot make durable
   * now is tried again by every later flush until it is: a failed flush never
   * lets a later one succeed without it. Throws WritesLostError when every
   * replica answered and none holds what this node acknowledged, this flush
   * or a read or write since the volume's last flush found it (a flush of
   * every volume, `uid` absent, leaves that to the volume's own: _unflushed.ts).
   * A flush still under way that took objects of this scope (another volume's,
   * or one of every volume) is waited for first: its outcome for them is this
   * flush's too (seed 22330 of the data-path simulation with --boot-reads:
   * a release passed while an upload's flush held the volume's lost object).
   */
  flush(uid?: string): Promise<void> {
    if (uid !== undefined) this.#early?.flushed(uid);
    return this.#flush.run(uid);
  }

  /** Flushes started ahead of a client's FLUSH so far (_early_flushes.ts; for /metrics). */
  get earlyFlushes(): number {
    return this.#early?.started ?? 0;
  }

  /** Forgets what this node knew of a volume's objects (another node now writes it). */
  forget(uid: string): void {
    this.#early?.forget(uid);
    this.#writers.forgetVolume(uid);
    this.#unflushed.forgetVolume(uid);
    this.#pages.dropVolume(uid);
    this.#reads.forgetVolume(uid);
  }

  /** What the page cache of objects held elsewhere did (for /metrics). */
  get remotePages(): {
    hits: number;
    misses: number;
    ahead: number;
    bytes: number;
    slabs: { touched: number; failed: number };
  } {
    return {
      ...this.#pages.counters,
      ahead: this.#reads.pagesAhead,
      bytes: this.#pages.bytes,
      slabs: this.#pages.slabs,
    };
  }
  /** Reads volume `uid`'s floors for this node as its writer at `epoch`, ahead of its first write. */
  prefetchFloors(uid: string, epoch: number): void {
    this.#floors.prefetch(uid, { kind: "writer", epoch });
  }

  /** Waits for background repairs. */
  async settle(): Promise<void> {
    await Promise.all([...this.#background]);
  }

  async #change(
    name: string,
    body: Pick<ObjectChange, "offset" | "data" | "truncate" | "remove">,
    existing = false,
    epoch?: number,
  ): Promise<void> {
    try {
      const { before, after } = await changeReplicas(
        this.#changeParts,
        name,
        body,
        existing,
        epoch,
      );
      if (body.truncate === true || body.remove === true) this.#pages.drop(name);
      else this.#pages.changed(name, before, after, body.offset, body.data);
    } catch (error) {
      this.#pages.drop(name);
      throw error;
    }
  }
}
