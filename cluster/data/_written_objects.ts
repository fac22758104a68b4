/**
 * What a node knows of the objects it writes (replicated_objects.ts): per
 * object, the last stamp sent and acknowledged and the replicas that hold it
 * ("current"), and how the writer catches up with the replicas: learning where
 * an object stands after a failure or on first use, making it durable on a
 * write quorum, bringing laggards up whole (_replica_learning.ts).
 */
import { WritesLostError } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import { compareStamps, type ObjectLink } from "./object_link.ts";
import { writeQuorumOf } from "./_write_quorum.ts";
import type { SettledReads } from "./_settled_reads.ts";
import type { Unflushed } from "./_unflushed.ts";
import type { FloorCache, FloorScope } from "./_floor_cache.ts";
import { type Lookup, ReplicaQuorumError, type Written } from "./_replica_copies.ts";
import { copyWhole, learnWhereItStands } from "./_replica_learning.ts";
import type { ObjectCounters, ReplicatedObjectsOptions } from "./replicated_objects.ts";

/** See the module doc. */
export class WrittenObjects {
  #written = new Map<string, Written>();
  #options: ReplicatedObjectsOptions;
  #counters: ObjectCounters;
  #unflushed: Unflushed;
  #views: SettledReads;
  #floors: FloorCache;

  constructor(
    options: ReplicatedObjectsOptions,
    counters: ObjectCounters,
    parts: { unflushed: Unflushed; views: SettledReads; floors: FloorCache },
  ) {
    this.#options = options;
    this.#counters = counters;
    this.#unflushed = parts.unflushed;
    this.#views = parts.views;
    this.#floors = parts.floors;
  }

  /** What this node knows of `name` (undefined: it did not write it, or forgot). */
  get(name: string): Written | undefined {
    return this.#written.get(name);
  }

  /** Forgets `name` (its writes were fenced: another node writes it now). */
  delete(name: string): void {
    this.#written.delete(name);
  }

  /** Forgets every object of the volume `uid` (another node writes it now). */
  forgetVolume(uid: string): void {
    for (const name of this.#written.keys()) {
      if (parseObjectName(name).uid === uid) this.#written.delete(name);
    }
  }

  /** The writer's state of `name`, learnt from the replicas on first use or after a failure. */
  async stateOf(
    name: string,
    links: ObjectLink[],
    quorum: number,
    existing: boolean,
  ): Promise<Written> {
    let written = this.#written.get(name);
    const fresh = written === undefined;
    if (written === undefined) {
      written = {
        stamp: [0, 0],
        acked: [0, 0],
        seen: [0, 0],
        current: new Set(),
        stale: true,
        leftBehind: null,
      };
      this.#written.set(name, written);
      this.#views.drop(name); // this node changes it now: no view holds it still
    }
    // The first learning of an object a map names flushes the replicas: what a predecessor
    // left is taken as it stands, durable, before this writer builds on it and waits for it
    // (seed 10104780 with joins, leaves and replacements: a new holder learnt its
    // predecessor's unflushed change from the one replica up; that copy was lost in a leave,
    // and once a member that had never held it died for good, every read waited for that
    // member until it had been gone ten grace periods).
    if (written.stale) {
      await this.learn(name, written, links, quorum, fresh && existing, fresh, existing);
    }
    if (existing && compareStamps(written.stamp, [0, 0]) === 0) {
      written.stale = true;
      throw new ReplicaQuorumError(
        `Cannot change object ${name}: no member that answers holds a copy of it`,
      );
    }
    return written;
  }

  /** {@linkcode learnWhereItStands}, dropping what this node knew when the writes were lost. */
  async learn(
    name: string,
    written: Written,
    links: ObjectLink[],
    quorum: number,
    flush: boolean,
    fresh = false,
    existing = false,
  ): Promise<void> {
    const epoch = this.#options.epochOf(parseObjectName(name).uid);
    const copied = await learnWhereItStands(
      name,
      written,
      this.ordered(links),
      quorum,
      flush,
      epoch,
      this.lookup(name, { kind: "writer", epoch }),
      fresh,
      existing,
    );
    if (copied === "lost") this.writesLost(name, written);
    for (const link of copied) this.noteCopied(written, link, name, flush);
  }

  /**
   * Makes what this node acknowledged of `name` durable on a write quorum:
   * learns where it stands (flushing every replica), then brings laggards up.
   */
  async makeDurable(name: string, links: ObjectLink[]): Promise<number> {
    const written = this.#written.get(name);
    if (written === undefined) return links.length; // forgotten or lost since: nothing to keep
    const quorum = this.quorumOf(links);
    await this.learn(name, written, links, quorum, true);
    let copies = links.filter((link) => written.current.has(link.id)).length;
    if (copies < quorum) copies += await this.bringUp(name, written, links, true);
    if (copies < quorum) {
      throw new ReplicaQuorumError(
        `Cannot flush object ${name}: durable on ${copies} replicas, ${quorum} needed`,
      );
    }
    return copies;
  }

  /**
   * Copies the latest version whole to replicas that lag behind it; with `flush`,
   * also makes the copies durable. Unreachable replicas stay behind. Returns how
   * many replicas it brought up.
   */
  async bringUp(
    name: string,
    written: Written,
    links: ObjectLink[],
    flush: boolean,
  ): Promise<number> {
    // Current copies off the placement (it moved with a join since they were
    // written) are sources too: the placement's new replicas are brought up from them.
    const off = (this.#options.everyone?.() ?? [])
      .filter((link) => !links.some((placed) => placed.id === link.id));
    const sources = [...links, ...off].filter((link) => written.current.has(link.id));
    const laggards = links.filter((link) => !written.current.has(link.id));
    if (laggards.length === 0) return 0;
    const fence = this.#options.epochOf(parseObjectName(name).uid);
    const copied = await copyWhole(
      name,
      this.ordered(sources),
      written.stamp,
      laggards,
      written.stamp,
      fence,
      flush,
    );
    for (const link of copied) this.noteCopied(written, link, name, flush);
    return copied.length;
  }

  noteCopied(written: Written, link: ObjectLink, name: string, flush: boolean): void {
    written.current.add(link.id);
    this.#counters.repairs++;
    if (!flush) this.#unflushed.note(link, name);
  }

  /**
   * Every copy lost what this node acknowledged of `name`: nothing is left to
   * keep (acked goes back to nothing), but the versions sent stay burnt (the
   * next change rewrites the object past them, in case one survives somewhere).
   */
  writesLost(name: string, written: Written): never {
    written.acked = [0, 0];
    written.seen = [0, 0];
    written.current = new Set();
    written.stale = true;
    // Not once the volume moved to another writer (forgotten): its loss is that one's.
    if (this.#written.get(name) === written) this.#unflushed.lost(name);
    throw new WritesLostError([name]);
  }

  /** Where else copies of `name` may be, and its floor (read again unless `scope` says it stands). */
  lookup(name: string, scope: FloorScope): Lookup {
    return {
      everyone: () => this.#options.everyone?.() ?? [],
      seenGone: () => this.#options.seenGone?.() ?? [],
      goneWithinGrace: () => this.#options.goneWithinGrace?.() ?? [],
      longGone: () => this.#options.longGone?.() ?? [],
      goneReplicas: () => this.#options.goneReplicas?.(name) ?? Promise.resolve(0),
      allLost: (ids) => this.#options.allLost?.(ids) ?? Promise.resolve(false),
      floorOf: () => this.#floors.floorOf(name, scope),
    };
  }

  /** The replicas a change or flush of an object must reach (_write_quorum.ts). */
  quorumOf(links: ObjectLink[]): number {
    return writeQuorumOf(links.map((link) => link.id), this.#options.isDead ?? (() => false));
  }

  /** `links` with this node's replica first. */
  ordered(links: ObjectLink[]): ObjectLink[] {
    const self = links.filter((link) => link.id === this.#options.selfId);
    return self.concat(links.filter((link) => link.id !== this.#options.selfId));
  }
}
