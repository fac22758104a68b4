/**
 * A replica for tests of ReplicatedObjects: an ObjectReplica on a memory disk
 * (a restart keeps only what was flushed), reached through a link the test can
 * cut (`down`) or hold (`gate`, flushes only).
 */
import assert from "node:assert/strict";
import {
  type ChangeReply,
  type Floor,
  maxFloor,
  type ObjectChange,
  type ObjectLink,
  ObjectReplica,
  placementDigest,
  type Stamp,
} from "../data/mod.ts";
import { MemoryDisk, MemoryPlatter } from "./_memory_disk.ts";

/** One replica on a memory disk, reached through a link that can be cut. */
export class TestReplica implements ObjectLink {
  readonly id: string;
  down = false;
  /** While set, a flush waits for it (then answers, or fails when down by then). */
  gate: Promise<void> | null = null;
  #platter = new MemoryPlatter();
  #disk: MemoryDisk;
  #replica: ObjectReplica;

  #placementOf: ((name: string) => number) | undefined;

  /** `placement`: the members this replica places every object on (its view of them). */
  constructor(id: string, placement?: string[]) {
    this.id = id;
    this.#placementOf = placement === undefined ? undefined : () => placementDigest(placement);
    this.#disk = new MemoryDisk({ platter: this.#platter, now: () => 0 });
    this.#replica = this.#open();
  }

  #open(): ObjectReplica {
    return new ObjectReplica(this.id, this.#disk, {
      journal: this.#disk,
      placementOf: this.#placementOf,
    });
  }

  /** The process dies and starts again: what was not flushed is gone. */
  restart(): void {
    this.#disk.crash();
    this.#disk = new MemoryDisk({ platter: this.#platter, now: () => 0 });
    this.#replica = this.#open();
  }

  async change(name: string, change: ObjectChange): Promise<ChangeReply> {
    return await this.#reach().change(name, change);
  }
  async read(name: string, offset: number, length: number) {
    return await this.#reach().read(name, offset, length);
  }
  async stamps(names: string[]): Promise<Stamp[]> {
    return await this.#reach().stamps(names);
  }
  async flush(names: string[]): Promise<Stamp[]> {
    if (this.gate !== null) await this.gate;
    return await this.#reach().flush(names);
  }
  async short(names: string[]): Promise<void> {
    return await this.#reach().short(names);
  }

  #reach(): ObjectReplica {
    if (this.down) throw new Error(`replica ${this.id} does not answer`);
    return this.#replica;
  }
}

/** Restarts every replica (what was not flushed is gone) and checks each holds `data` in `name`. */
export async function assertFlushedOn(
  replicas: TestReplica[],
  name: string,
  data: Uint8Array,
): Promise<void> {
  for (const replica of replicas) {
    replica.restart();
    assert.deepEqual((await replica.read(name, 0, -1)).data, data, `flushed on ${replica.id}`);
  }
}

/** A 4 KiB page of bytes `fill` (what the tests over TestReplica write). */
export const small = (fill: number): Uint8Array => new Uint8Array(4096).fill(fill);

/** Healing's copy of `from`'s version of `name` onto `to` (a whole replacement). */
export async function healCopy(from: ObjectLink, to: ObjectLink, name: string): Promise<void> {
  const { data, stamp } = await from.read(name, 0, -1);
  await to.change(name, {
    epoch: stamp[0],
    version: stamp[1],
    replace: true,
    heal: true,
    offset: 0,
    data,
  });
}

/** Floors kept in memory (the cluster keeps them in a metadata register): `saved` shows them. */
export function memoryFloors() {
  const saved = new Map<string, Floor>();
  return {
    saved,
    of: () => Promise.resolve(new Map(saved)),
    raise: (_uid: string, raised: Map<string, Floor>) => {
      for (const [object, floor] of raised) saved.set(object, maxFloor(saved.get(object), floor));
      return Promise.resolve();
    },
  };
}

/**
 * What a ReplicatedObjects sees of the members holding `replicas`: those not
 * down are live, those down gossip calls gone (they may come back).
 */
export function membersOf(replicas: TestReplica[]) {
  return {
    everyone: () => replicas.filter((replica) => !replica.down),
    seenGone: () => replicas.filter((replica) => replica.down),
  };
}
