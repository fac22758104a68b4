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
 * (WritesLostError, on the flush, read or write that finds it) instead of
 * serving or extending an older copy as if it were the latest. A change that
 * reached only replicas that stopped answering is never overtaken by another
 * change under the same stamp (_replica_learning.ts, learnWhereItStands).
 */
import { KeyedMutex } from "../../core/_mutex.ts";
import { LeaseLostError, WritesLostError } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import { isFenced } from "./fences.ts";
import { compareStamps, type ObjectChange, type ObjectLink } from "./object_link.ts";
import { SettledReads } from "./_settled_reads.ts";
import { WrittenObjects } from "./_written_objects.ts";
import { Unflushed } from "./_unflushed.ts";
import { noFloors, type ObjectFloors } from "./object_floors.ts";
import { FloorCache, type FloorScope } from "./_floor_cache.ts";
import { readNewest, ReplicaQuorumError } from "./_replica_copies.ts";
import { ObjectFlush } from "./_object_flush.ts";

export { ReplicaQuorumError };

/** Options of {@linkcode ReplicatedObjects}. */
export interface ReplicatedObjectsOptions {
  /** This node's replica id: read from it first when it holds a copy. */
  selfId: string;
  /** The replicas of an object, in placement order. */
  replicasOf: (name: string) => ObjectLink[];
  /** The writer's lease epoch for a volume (fencing; 1 until leases exist). */
  epochOf: (uid: string) => number;
  /** True when gossip declares the member dead (lowers the write quorum); none by default. */
  isDead?: (id: string) => boolean;
  /** Where floors are kept (object_floors.ts); none by default (nothing is ever dead then). */
  floors?: ObjectFloors;
  /** A link to every live member (copies off the placement); none by default. */
  everyone?: () => ObjectLink[];
  /**
   * False when what this node knows as the writer of volume `uid`'s objects
   * may be stale (its lease not confirmed lately: leases/_held_leases.ts,
   * `trusted`); reads then ask the replicas. Always true by default.
   */
  trustsWriter?: (uid: string) => boolean;
}

/** Counters an operator sees in /metrics. */
export interface ObjectCounters {
  writes: number;
  laggards: number;
  repairs: number;
  staleReads: number;
}

/** Writes, reads and flushes objects on their replicas. */
export class ReplicatedObjects {
  readonly counters: ObjectCounters = { writes: 0, laggards: 0, repairs: 0, staleReads: 0 };
  #options: ReplicatedObjectsOptions;
  #locks = new KeyedMutex();
  /** What is not durable yet, and losses waiting to be heard (_unflushed.ts). */
  #unflushed = new Unflushed();
  /** Where reads under a view found each object (reads of volumes nobody may write). */
  #views = new SettledReads();
  #background = new Set<Promise<void>>();
  /** Floors as reads check them (_floor_cache.ts). */
  #floors: FloorCache;

  #writers: WrittenObjects;
  #flush: ObjectFlush;

  constructor(options: ReplicatedObjectsOptions) {
    this.#options = options;
    this.#floors = new FloorCache(options.floors ?? noFloors);
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
  }

  /**
   * Writes `data` at `offset` (with `truncate`, on an emptied object).
   * `existing`: the object was written before (a write in place), so finding
   * no copy of it anywhere means its replicas do not answer, not that it is new.
   */
  write(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; existing?: boolean } = {},
  ): Promise<void> {
    const truncate = options.truncate ?? false;
    if (this.#unflushed.takeUnheard(name)) return Promise.reject(new WritesLostError([name]));
    return this.#locks.run(
      name,
      () => this.#change(name, { offset, data, truncate }, options.existing ?? false),
    );
  }

  /** Deletes an object everywhere it is stored. */
  delete(name: string): Promise<void> {
    return this.#locks.run(
      name,
      () => this.#change(name, { offset: 0, data: new Uint8Array(), remove: true }),
    );
  }

  /**
   * Reads `into.length` bytes at `offset` from a replica holding the latest
   * version. Throws WritesLostError when this node acknowledged writes of the
   * object that no replica holds any more. `existing`, `view`, `frozen`: see
   * Engine.readObject.
   */
  async read(
    name: string,
    offset: number,
    into: Uint8Array,
    options: { existing?: boolean; view?: string; frozen?: boolean } = {},
  ): Promise<void> {
    const { existing = false, view, frozen = false } = options;
    if (this.#unflushed.takeUnheard(name)) throw new WritesLostError([name]);
    const links = this.#writers.ordered(this.#options.replicasOf(name));
    const written = this.#writers.get(name);
    // What this node knows as the writer is the truth only while its lease is
    // confirmed: a holder cut off and taken over, not told yet, read a snapshot
    // the new holder took from its own stale copy (seed 150057 with joins).
    const uid = parseObjectName(name).uid;
    const trusted = this.#options.trustsWriter?.(uid) ?? true;
    const writes = written !== undefined && trusted;
    // Objects this node writes are read from their current replicas (below); under a
    // view, the others from where a read found them newest.
    if (!writes && view !== undefined) {
      if (await this.#views.read(view, name, offset, into, links)) return;
    }
    if (writes && !written.stale) {
      for (const link of links.filter((link) => written.current.has(link.id))) {
        try {
          const { data, stamp, release } = await link.read(name, offset, into.length, into);
          if (compareStamps(stamp, written.stamp) !== 0) {
            // It lost what it took (it restarted before a flush): it lags now.
            release?.();
            written.current.delete(link.id);
            continue;
          }
          if (data !== into) into.set(data);
          release?.();
          return;
        } catch {
          // try the next current replica
        }
      }
    }
    // Not the writer (or its replicas failed): read the copy with the highest stamp.
    const acked = written?.acked ?? [0, 0];
    const scope: FloorScope = frozen
      ? { kind: "frozen" }
      : view !== undefined && !writes
      ? { kind: "view", view }
      : trusted && this.#options.epochOf(uid) > 0
      ? { kind: "writer", epoch: this.#options.epochOf(uid) }
      : { kind: "once" };
    const lookup = this.#writers.lookup(name, scope);
    const newest = await readNewest(name, links, offset, into, lookup, {
      atLeast: acked,
      existing,
    });
    if (newest.staleFirst) this.counters.staleReads++;
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

  /**
   * Makes every change that resolved before this call durable on a write quorum
   * of its object's replicas (with `uid`, at least the changes of that volume's
   * objects), bringing lagging replicas up first when the others fall short
   * (e.g. one came back from the dead since the write); then brings the
   * remaining laggards up, in the background. An object it cannot make durable
   * now is tried again by every later flush until it is: a failed flush never
   * lets a later one succeed without it. Throws WritesLostError when every
   * replica answered and none holds what this node acknowledged; a flush of
   * every volume (`uid` absent) leaves that to the volume's own (_unflushed.ts).
   * A flush still under way that took objects of this scope (another volume's,
   * or one of every volume) is waited for first: its outcome for them is this
   * flush's too (seed 22330 of the data-path simulation with --boot-reads:
   * a release passed while an upload's flush held the volume's lost object).
   */
  flush(uid?: string): Promise<void> {
    return this.#flush.run(uid);
  }

  /** Forgets what this node knew of a volume's objects (another node now writes it). */
  forget(uid: string): void {
    this.#writers.forgetVolume(uid);
    this.#unflushed.forgetVolume(uid);
  }

  /** Waits for background repairs. */
  async settle(): Promise<void> {
    await Promise.all([...this.#background]);
  }

  async #change(
    name: string,
    body: Pick<ObjectChange, "offset" | "data" | "truncate" | "remove">,
    existing = false,
  ): Promise<void> {
    const epoch = this.#options.epochOf(parseObjectName(name).uid);
    if (epoch === 0) {
      throw new LeaseLostError(
        `Cannot write object ${name}: this node holds no lease on its volume`,
      );
    }
    const links = this.#options.replicasOf(name);
    const quorum = this.#writers.quorumOf(links);
    const written = await this.#writers.stateOf(name, links, quorum, existing);
    // Fewer current replicas than the quorum (one came back from the dead, or
    // missed changes): bring them up first, or fail before sending a change.
    const currentCount = () => links.filter((link) => written.current.has(link.id)).length;
    if (currentCount() < quorum) await this.#writers.bringUp(name, written, links, false);
    if (currentCount() < quorum) {
      written.stale = true; // learn the replicas' state again on the next write
      throw new ReplicaQuorumError(
        `Cannot write object ${name}: ${currentCount()} of ${links.length} replicas ` +
          `are current, ${quorum} needed`,
      );
    }
    const change: ObjectChange = {
      ...body,
      epoch,
      version: written.stamp[1] + 1,
    };
    const targets = links.filter((link) => written.current.has(link.id));
    const self = targets.find((link) => link.id === this.#options.selfId);
    const remotes = targets.filter((link) => link !== self);
    const replies = await Promise.allSettled(remotes.map((link) => link.change(name, change)));
    const current = new Set<string>();
    let fenced: Error | null = null;
    replies.forEach((reply, i) => {
      if (reply.status === "fulfilled" && reply.value.applied) {
        current.add(remotes[i].id);
        this.#unflushed.note(remotes[i], name);
      } else if (reply.status === "rejected" && isFenced(reply.reason)) {
        fenced = new LeaseLostError(String(reply.reason.message), { cause: reply.reason });
      }
    });
    // This node's own copy changes only once the others make a quorum with it, so
    // a holder cut off from the cluster cannot change even its own copy (unless
    // it sees the other replicas dead and the quorum is its copy alone).
    if (fenced === null && self !== undefined && current.size + 1 >= quorum) {
      const reply = await self.change(name, change);
      if (reply.applied) {
        current.add(self.id);
        this.#unflushed.note(self, name);
      }
    }
    this.counters.writes++;
    this.counters.laggards += targets.length - current.size;
    written.stamp = [change.epoch, change.version];
    written.current = current;
    if (fenced !== null) {
      this.#writers.delete(name);
      throw fenced;
    }
    if (current.size < quorum) await this.#writers.bringUp(name, written, links, false);
    if (written.current.size < quorum) {
      written.stale = true; // learn the replicas' state again on the next write
      throw new ReplicaQuorumError(
        `Cannot write object ${name}: ${written.current.size} of ${links.length} replicas ` +
          `took it, ${quorum} needed`,
      );
    }
    written.acked = written.stamp;
  }
}
