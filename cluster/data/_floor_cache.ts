/**
 * Floors (object_floors.ts) as reads and writers check them. A copy found by
 * every replica agreeing may still be below its floor (seed 600710 of the
 * data-path simulation with joins and leaves: the one copy a flush made
 * durable left with its member, healing copied an older copy to the new
 * replica, and the two agreed on it), so every read that cannot trust the
 * writer's own state checks the floor. Each check would be a metadata read;
 * one read of a volume's floors is reused for as long as nothing can raise
 * the floors it is asked about:
 * - frozen objects (a snapshot's, an earlier generation's): their floors were
 *   raised by the flush before the snapshot that froze them, so a read made
 *   after the reader knew generation g frozen is final for every generation
 *   up to g;
 * - under a read view (a volume nobody may write, at one lease epoch);
 * - by the writer under its lease epoch: only it raises floors then, and this
 *   cache hears of its raises.
 * Anything else reads the floors again each time.
 *
 * A floor all of whose holders an operator declared lost no longer binds
 * (object_floors.ts, Floor): asked each time it would, so a declaration made
 * after the floors were read counts at once.
 */
import { parseObjectName } from "../../core/block_map.ts";
import { type Floor, maxFloor, type ObjectFloors } from "./object_floors.ts";
import type { Stamp } from "./object_link.ts";

/** For how long one read of a volume's floors stands (see the module doc). */
export type FloorScope =
  | { kind: "frozen" }
  | { kind: "view"; view: string }
  | { kind: "writer"; epoch: number }
  | { kind: "once" };

/** Floor reads remembered at once (the oldest is forgotten first). */
export const floorReadsMax = 4096;

interface FloorRead {
  uid: string;
  floors: Promise<Map<string, Floor>>;
  /** Frozen scope: the highest generation this read is final for. */
  generation: number;
}

/** See the module doc. */
export class FloorCache {
  #floors: ObjectFloors;
  #allLost: (ids: string[]) => Promise<boolean>;
  #reads = new Map<string, FloorRead>();

  /** `allLost`: true when every one of `ids` was declared lost (none ever, by default). */
  constructor(floors: ObjectFloors, allLost?: (ids: string[]) => Promise<boolean>) {
    this.#floors = floors;
    this.#allLost = allLost ?? (() => Promise.resolve(false));
  }

  /** The floor of object `name`, read again unless a read within `scope` stands. */
  async floorOf(name: string, scope: FloorScope): Promise<Stamp> {
    const { uid, generation } = parseObjectName(name);
    const floor = (await this.#read(uid, generation, scope)).get(name);
    if (floor === undefined) return [0, 0];
    if (floor.holders.length > 0 && await this.#allLost(floor.holders)) return [0, 0];
    return floor.stamp;
  }

  /** Starts reading volume `uid`'s floors within `scope` (a writer's, before its first write). */
  prefetch(uid: string, scope: FloorScope): void {
    this.#read(uid, 0, scope).catch(() => {});
  }

  #read(uid: string, generation: number, scope: FloorScope): Promise<Map<string, Floor>> {
    const key = scope.kind === "frozen"
      ? `${uid} frozen`
      : scope.kind === "view"
      ? `${uid} view ${scope.view}`
      : scope.kind === "writer"
      ? `${uid} writer ${scope.epoch}`
      : null;
    let read = key === null ? undefined : this.#reads.get(key);
    if (read === undefined || (scope.kind === "frozen" && read.generation < generation)) {
      read = { uid, floors: this.#floors.of(uid), generation };
      if (key !== null) this.#remember(key, read);
    }
    return read.floors;
  }

  /** Raises floors (ObjectFloors.raise), and the remembered reads of `uid` with them. */
  async raise(uid: string, raised: Map<string, Floor>): Promise<void> {
    await this.#floors.raise(uid, raised);
    for (const read of this.#reads.values()) {
      if (read.uid !== uid) continue;
      read.floors = read.floors.then((floors) => {
        const merged = new Map(floors);
        for (const [name, floor] of raised) merged.set(name, maxFloor(merged.get(name), floor));
        return merged;
      });
      read.floors.catch(() => {}); // a failed read is dropped by #remember's handler
    }
  }

  #remember(key: string, read: FloorRead): void {
    this.#reads.delete(key);
    if (this.#reads.size >= floorReadsMax) this.#reads.delete(this.#reads.keys().next().value!);
    this.#reads.set(key, read);
    // A failed read (no metadata quorum) is not remembered: the next check asks again.
    read.floors.catch(() => {
      if (this.#reads.get(key) === read) this.#reads.delete(key);
    });
  }
}
