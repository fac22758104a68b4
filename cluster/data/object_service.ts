/**
 * Volume objects on a storing node (a replica), with two guards:
 *
 * - Fencing (fences.ts) (DESIGN.md invariant 3): every write carries the writer's lease epoch
 *   for the volume; the node remembers, durably, the highest epoch it has seen per
 *   volume and refuses writes with a lower one. A holder that was cut off and
 *   replaced can therefore never change the volume again, whatever it believes.
 * - Stamps: each copy of an object has a stamp (writer's epoch, version); the writer
 *   advances the version by one per change. A replica applies a change only on top
 *   of the version before it, so a replica that missed one answers "behind"
 *   instead of holding a mix; the writer then replaces its copy whole (`replace`,
 *   applied only when newer). Readers on other nodes read the copy with the
 *   highest stamp. Stamps are kept in memory and persisted per volume (`ov/UID`)
 *   at each flush, after the data is durable, so a persisted stamp never claims
 *   more than the disk holds.
 */
import type { NodeDisk } from "../../core/mod.ts";
import { isObjectName } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import { Fences } from "./fences.ts";
import {
  type ChangeReply,
  compareStamps,
  objectBytesMax,
  type ObjectChange,
  type ObjectLink,
  type Stamp,
} from "./object_link.ts";

const unwritten: Stamp = [0, 0];

/** The objects this node stores, with their versions and fences. */
export class ObjectReplica implements ObjectLink {
  readonly id: string;
  readonly fences: Fences;
  #engine: NodeDisk;
  /** uid → (object name → stamp), loaded from `ov/UID` on first use. */
  #volumes = new Map<string, Promise<Map<string, Stamp>>>();
  /** uid → version of its `ov/UID` record. */
  #recordVersions = new Map<string, number>();
  #dirty = new Set<string>();
  #locks = new KeyedMutex();
  #persisting = new KeyedMutex();

  constructor(id: string, engine: NodeDisk) {
    this.id = id;
    this.#engine = engine;
    this.fences = new Fences(engine);
  }

  change(name: string, change: ObjectChange): Promise<ChangeReply> {
    checkObjectName(name);
    const { uid } = parseObjectName(name);
    if (change.offset + change.data.length > objectBytesMax) {
      throw new RangeError(`Cannot change object ${name}: it would exceed ${objectBytesMax} bytes`);
    }
    return this.#locks.run(name, async () => {
      await this.fences.admit(uid, Math.max(change.epoch, change.fence ?? 0));
      const stamps = await this.#stampsOf(uid);
      const current = stamps.get(name) ?? unwritten;
      const stamp: Stamp = [change.epoch, change.version];
      const applies = change.replace === true
        ? compareStamps(stamp, current) > 0
        : change.version === current[1] + 1 && change.epoch >= current[0];
      if (!applies) return { applied: false, stamp: current };
      if (change.remove === true) {
        await this.#engine.deleteObject(name);
      } else {
        const truncate = change.truncate === true || change.replace === true;
        await this.#engine.writeObject(name, change.offset, change.data, { truncate });
      }
      stamps.set(name, stamp);
      this.#dirty.add(uid);
      return { applied: true, stamp };
    });
  }

  async read(
    name: string,
    offset: number,
    length: number,
  ): Promise<{ data: Uint8Array; stamp: Stamp }> {
    checkObjectName(name);
    const { uid } = parseObjectName(name);
    return await this.#locks.run(name, async () => {
      const stamp = (await this.#stampsOf(uid)).get(name) ?? unwritten;
      if (length < 0) length = Math.max(0, (await this.#engine.objectSize(name)) - offset);
      if (length > objectBytesMax) {
        throw new RangeError(
          `Cannot read object ${name}: ${length} bytes exceed ${objectBytesMax}`,
        );
      }
      const data = new Uint8Array(length);
      await this.#engine.readObject(name, { offset, length }, data);
      return { data, stamp };
    });
  }

  async stamps(names: string[]): Promise<Stamp[]> {
    return await Promise.all(names.map(async (name) => {
      checkObjectName(name);
      return (await this.#stampsOf(parseObjectName(name).uid)).get(name) ?? unwritten;
    }));
  }

  async flush(names: string[] = []): Promise<Stamp[]> {
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    await this.#engine.flush();
    await Promise.all(dirty.map((uid) => this.#persist(uid)));
    return await this.stamps(names);
  }

  /**
   * Gives this node's copy of `name` up (healing hands it off to its replicas),
   * data and stamp together and only while its stamp is still `stamp`: a change
   * that arrived since the replicas were checked keeps the copy. Without its
   * stamp, a change from a writer that still counts this node a replica finds
   * it behind and replaces it whole, instead of being applied on top of data no
   * longer here. The stamp goes durably before the data. True when given up.
   */
  drop(name: string, stamp: Stamp): Promise<boolean> {
    checkObjectName(name);
    const { uid } = parseObjectName(name);
    return this.#locks.run(name, async () => {
      const stamps = await this.#stampsOf(uid);
      if (compareStamps(stamps.get(name) ?? unwritten, stamp) !== 0) return false;
      stamps.delete(name);
      this.#dirty.add(uid);
      await this.flush();
      await this.#engine.deleteObject(name);
      return true;
    });
  }

  /** Every object this node stores. */
  list(): AsyncIterable<string> {
    return this.#engine.listObjects();
  }

  #stampsOf(uid: string): Promise<Map<string, Stamp>> {
    let stamps = this.#volumes.get(uid);
    if (stamps === undefined) {
      stamps = (async () => {
        const entry = await this.#engine.getMeta(`ov/${uid}`);
        if (entry === null) return new Map<string, Stamp>();
        this.#recordVersions.set(uid, entry.version);
        const saved = JSON.parse(new TextDecoder().decode(entry.value)) as Record<string, Stamp>;
        return new Map(Object.entries(saved));
      })();
      this.#volumes.set(uid, stamps);
      stamps.catch(() => this.#volumes.delete(uid));
    }
    return stamps;
  }

  #persist(uid: string): Promise<void> {
    return this.#persisting.run(uid, async () => {
      const stamps = await this.#stampsOf(uid);
      const value = new TextEncoder().encode(JSON.stringify(Object.fromEntries(stamps)));
      const expected = this.#recordVersions.get(uid) ?? 0;
      this.#recordVersions.set(uid, await this.#engine.putMeta(`ov/${uid}`, value, expected));
    });
  }
}

function checkObjectName(name: string): void {
  if (!isObjectName(name)) throw new TypeError(`bad object name ${JSON.stringify(name)}`);
}
