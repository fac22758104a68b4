/**
 * A replica for tests of ReplicatedObjects: an ObjectReplica on a memory disk
 * (a restart keeps only what was flushed), reached through a link the test can
 * cut (`down`) or hold (`gate`, flushes only), its journal's syncs held open
 * on demand (`journal`).
 */
import assert from "node:assert/strict";
import {
  type ChangeReply,
  type Floor,
  type JournalStore,
  maxFloor,
  type ObjectChange,
  type ObjectLink,
  ObjectReplica,
  placementDigest,
  type Stamp,
} from "../data/mod.ts";
import { MemoryDisk, MemoryPlatter } from "./_memory_disk.ts";

/**
 * A journal on a memory disk whose syncs, once `hold()` was called, make what
 * was appended durable at once but end only at `release()` (a sync under way,
 * for as long as a test needs).
 */
export class HeldJournal implements JournalStore {
  #disk: MemoryDisk;
  #gate: PromiseWithResolvers<void> | null = null;
  #syncing = Promise.withResolvers<void>();

  constructor(disk: MemoryDisk) {
    this.#disk = disk;
  }

  /** Holds the syncs that start from now on. */
  hold(): void {
    this.#gate = Promise.withResolvers();
    this.#syncing = Promise.withResolvers();
  }

  /** Resolves once a sync started while held. */
  get syncing(): Promise<void> {
    return this.#syncing.promise;
  }

  /** Lets the held syncs end. */
  release(): void {
    this.#gate?.resolve();
    this.#gate = null;
  }

  journals(): Promise<number[]> {
    return this.#disk.journals();
  }
  readJournal(gen: number): Promise<Uint8Array> {
    return this.#disk.readJournal(gen);
  }
  appendJournal(gen: number, parts: Uint8Array[]): void {
    this.#disk.appendJournal(gen, parts);
  }
  async syncJournal(gen: number): Promise<void> {
    await this.#disk.syncJournal(gen);
    const gate = this.#gate;
    if (gate === null) return;
    this.#syncing.resolve();
    await gate.promise;
  }
  removeJournal(gen: number): Promise<void> {
    return this.#disk.removeJournal(gen);
  }
  closeJournals(): void {
    this.#disk.closeJournals();
  }
}

/** One replica on a memory disk, reached through a link that can be cut. */
export class TestReplica implements ObjectLink {
  readonly id: string;
  down = false;
  /** Flushes asked of this replica so far. */
  flushes = 0;
  /** While set, a flush waits for it (then answers, or fails when down by then). */
  gate: Promise<void> | null = null;
  #platter = new MemoryPlatter();
  #disk: MemoryDisk;
  #journal: HeldJournal;
  #replica: ObjectReplica;

  #placementOf: ((name: string) => number) | undefined;

  /** `placement`: the members this replica places every object on (its view of them). */
  constructor(id: string, placement?: string[]) {
    this.id = id;
    this.#placementOf = placement === undefined ? undefined : () => placementDigest(placement);
    this.#disk = new MemoryDisk({ platter: this.#platter, now: () => 0 });
    this.#journal = new HeldJournal(this.#disk);
    this.#replica = this.#open();
  }

  /** The journal of the replica as it runs now (a restart opens another). */
  get journal(): HeldJournal {
    return this.#journal;
  }

  #open(): ObjectReplica {
    return new ObjectReplica(this.id, this.#disk, {
      journal: this.#journal,
      placementOf: this.#placementOf,
    });
  }

  /** The process dies and starts again: what was not flushed is gone. */
  restart(): void {
    this.#disk.crash();
    this.#disk = new MemoryDisk({ platter: this.#platter, now: () => 0 });
    this.#journal = new HeldJournal(this.#disk);
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
    this.flushes++;
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
