/**
 * The flush of a writer of objects (replicated_objects.ts, which documents
 * what a flush promises): what it took from the objects not durable yet is
 * made durable on a write quorum of each object's replicas (of the placement
 * as it is now), bringing lagging replicas up when the others fall short,
 * raising floors for objects durable on too few copies to be found by every
 * reader, and bringing the remaining laggards up in the background.
 */
import type { KeyedMutex } from "../../core/_mutex.ts";
import { LeaseLostError, WritesLostError } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import { isFenced } from "./fences.ts";
import { compareStamps, type ObjectLink, type Stamp } from "./object_link.ts";
import type { WrittenObjects } from "./_written_objects.ts";
import type { Written } from "./_replica_copies.ts";
import type { PendingOnReplica, Unflushed } from "./_unflushed.ts";
import { type Floor, needsFloor } from "./object_floors.ts";
import type { FloorCache } from "./_floor_cache.ts";
import type { ReplicatedObjectsOptions } from "./replicated_objects.ts";

/** The writer's state a flush works on, shared with its ReplicatedObjects. */
export interface ObjectFlushParts {
  options: ReplicatedObjectsOptions;
  writers: WrittenObjects;
  unflushed: Unflushed;
  locks: KeyedMutex;
  /** Background repairs (ReplicatedObjects.settle waits for them). */
  background: Set<Promise<void>>;
  /** Where floors are raised (through the reads' cache of them). */
  floors: FloorCache;
}

/** See the module doc. */
export class ObjectFlush {
  #options: ReplicatedObjectsOptions;
  #writers: WrittenObjects;
  #unflushed: Unflushed;
  #locks: KeyedMutex;
  #background: Set<Promise<void>>;
  #floors: FloorCache;

  constructor(parts: ObjectFlushParts) {
    this.#options = parts.options;
    this.#writers = parts.writers;
    this.#unflushed = parts.unflushed;
    this.#locks = parts.locks;
    this.#background = parts.background;
    this.#floors = parts.floors;
  }

  /**
   * ReplicatedObjects.flush; with `early`, a flush of volume `uid` that
   * answers nobody (_early_flushes.ts): it never throws, and leaves what it
   * could not do to the volume's next flush (the objects it took count as
   * fallen short, so that flush tries them again; the losses it found stay
   * to be reported by it).
   */
  async run(uid?: string, options: { early?: boolean } = {}): Promise<void> {
    const early = options.early === true && uid !== undefined;
    const ofScope = (name: string) => uid === undefined || parseObjectName(name).uid === uid;
    const { pending, done } = await this.#unflushed.take(ofScope);
    const short = early ? this.#unflushed.shortOf(ofScope) : [];
    try {
      await this.#flushTaken(uid, ofScope, pending, early);
    } catch (error) {
      if (!early) throw error;
      const names = [...short, ...pending.flatMap(({ names }) => [...names])];
      for (const name of names) this.#unflushed.setShort(name, true);
    } finally {
      done();
    }
  }

  async #flushTaken(
    uid: string | undefined,
    ofScope: (name: string) => boolean,
    taken: PendingOnReplica[],
    early: boolean,
  ): Promise<void> {
    // Only replicas of the placement as it is now count: readers look there, and a
    // copy left on a member the placement moved off (a join this node heard of
    // after writing) makes nothing durable for them (seed 450496 with joins).
    const placed = new Map<string, Set<string>>();
    const inPlacement = (name: string, id: string) => {
      if (!placed.has(name)) {
        placed.set(name, new Set(this.#options.replicasOf(name).map((link) => link.id)));
      }
      return placed.get(name)!.has(id);
    };
    /** The members of the placement each object is durable on. */
    const durable = new Map<string, string[]>();
    // The stamp those copies hold at least: what a floor may claim. Not the writer's
    // stamp when the floor is raised: a change sent meanwhile that failed moved it past
    // every copy, and its floor made the object unreadable for good (seed 700810 with
    // joins, leaves and replacements).
    const durableAt = new Map<string, Stamp>();
    // What this flush must make durable: each object at the stamp written when it was
    // taken. A change answered meanwhile is the next flush's (it noted the object
    // again), and a replica's flush tells the stamps its sync covers, which need not
    // include it.
    const wanted = new Map<string, Stamp>();
    for (const { names } of taken) {
      for (const name of names) {
        const written = this.#writers.get(name);
        if (written !== undefined) wanted.set(name, written.stamp);
      }
    }
    const flushed = await Promise.allSettled(
      taken.map(({ link, names }) => link.flush([...names])),
    );
    taken.forEach(({ link, names }, i) => {
      const result = flushed[i];
      [...names].forEach((name, j) => {
        // Durable here only at the stamp this node wrote: a replica that restarted and
        // lost changes it took holds less (or nothing), and is no longer current (it is
        // brought up whole below, from a replica that holds the stamp, or the flush fails).
        const written = this.#writers.get(name);
        const stamp = wanted.get(name);
        const holds = result.status === "fulfilled" &&
          (stamp === undefined || compareStamps(result.value[j], stamp) >= 0);
        if (!holds) written?.current.delete(link.id);
        else if (inPlacement(name, link.id)) {
          durable.set(name, [...durable.get(name) ?? [], link.id]);
          if (stamp !== undefined) durableAt.set(name, stamp);
        }
      });
    });
    const names = new Set(taken.flatMap(({ names }) => [...names]));
    for (const name of this.#unflushed.shortOf(ofScope)) names.add(name);
    const lost: string[] = [];
    let short: Error | null = null;
    const floors = new Map<string, Map<string, Floor>>();
    for (const name of names) {
      const links = this.#options.replicasOf(name);
      try {
        let holders = durable.get(name) ?? [];
        let copies = holders.length;
        let stamp = durableAt.get(name);
        if (copies < this.#writers.quorumOf(links)) {
          [copies, stamp, holders] = await this.#locks.run(name, async () => {
            const made = await this.#writers.makeDurable(name, links);
            const written = this.#writers.get(name);
            const on = links.filter((link) => written?.current.has(link.id) === true);
            return [made, written?.stamp, on.map((link) => link.id)] as const;
          });
        }
        this.#unflushed.setShort(name, false);
        // Durable now: a later look that finds less while a member gone lately is silent
        // waits for it, not taking the writes for lost (seed 10146892 with joins, leaves
        // and replacements: both replicas of a flushed object left, three members joined,
        // the writer's new replicas answered "nothing", and the object was rewritten as
        // removed over the copies the two brought back).
        const written = this.#writers.get(name);
        if (
          written !== undefined && stamp !== undefined && compareStamps(stamp, written.seen) > 0
        ) {
          written.seen = stamp;
        }
        const behind = written?.leftBehind ?? null;
        const leftBehind = behind !== null && stamp !== undefined &&
          compareStamps(stamp, behind) >= 0;
        if (stamp !== undefined && (needsFloor(copies, links.length) || leftBehind)) {
          const uid = parseObjectName(name).uid;
          if (!floors.has(uid)) floors.set(uid, new Map());
          floors.get(uid)!.set(name, { stamp, holders: [...holders].sort() });
        }
      } catch (error) {
        if (error instanceof WritesLostError) lost.push(name);
        else if (isFenced(error)) {
          throw new LeaseLostError(String((error as Error).message), { cause: error });
        } else {
          this.#unflushed.setShort(name, true);
          short ??= error as Error;
        }
      }
    }
    for (const name of names) {
      const written = this.#writers.get(name);
      const links = this.#options.replicasOf(name);
      if (written === undefined || links.every((link) => written.current.has(link.id))) continue;
      const task = this.#locks.run(name, () => this.#writers.bringUp(name, written, links, true))
        .then(() => {}, () => {}).then(() => this.#askToHeal(name, written, links));
      this.#background.add(task);
      task.finally(() => this.#background.delete(task));
    }
    // Durable on too few copies for every read to see: say so before acknowledging.
    await Promise.all([...floors].map(([uid, raised]) => this.#floors.raise(uid, raised)));
    for (const raised of floors.values()) {
      for (const [name, { stamp }] of raised) {
        const written = this.#writers.get(name);
        if (written?.leftBehind && compareStamps(stamp, written.leftBehind) >= 0) {
          written.leftBehind = null; // the floor keeps readers off the copy left behind
        }
      }
    }
    // A flush of every volume leaves what it found to each volume's flush (and to the
    // object's next read or write). A volume's flush reports every loss found since its
    // last, by whatever found it: a write that found one and failed may not have told
    // the volume yet when a flush (a release's) gets its lock, and that flush must not
    // persist a map naming what was lost (seed 4039764 with joins, leaves, replacements).
    // Only while this node still writes the object: a loss found after its volume moved to
    // another writer (forgotten meanwhile) is that writer's, and the release that moved it
    // reported it there; kept here it failed this node's reads of the volume for good (seed
    // 8100190 with joins, leaves, replacements and a declaration).
    if (uid === undefined) {
      this.#unflushed.addUnheard(
        lost.splice(0).filter((name) => this.#writers.get(name) !== undefined),
      );
    } else if (early) {
      // Noted where found (WrittenObjects.writesLost): the volume's own flush reports them.
      lost.splice(0);
    } else lost.push(...this.#unflushed.takeLostOf(ofScope));
    if (lost.length > 0) throw new WritesLostError([...new Set(lost)]);
    if (short !== null) throw short;
  }

  /**
   * Replicas still behind after the background bring-up (they did not answer):
   * the current ones are told, so that their healing copies the object on as
   * soon as the others answer. Without it nothing did until the anti-entropy
   * walk, minutes later (seed 7001556 with joins, leaves and replacements: a
   * flush made an object durable on one replica of two while the other was cut
   * off; no member saw a change, and the one copy died for good 20 s later).
   */
  async #askToHeal(name: string, written: Written, links: ObjectLink[]): Promise<void> {
    if (links.every((link) => written.current.has(link.id))) return;
    const current = links.filter((link) => written.current.has(link.id));
    await Promise.allSettled(current.map((link) => link.short([name])));
  }
}
