/**
 * What makes a replica's object changes durable (object_journal.ts): the
 * stamps of each volume's objects, the journal every change goes to, the
 * checkpoints that bring object files and `ov/UID` stamp records up to date so
 * that older journals can go, and the replay of the journals left by a crash.
 *
 * A checkpoint starts a new journal and takes a copy of the stamps at that
 * instant (every change in the old journal is in its object file by then, and
 * no later one is counted); it then syncs every object file, writes the copied
 * stamps, and removes the old journals. A crash in between leaves the old
 * journals to replay, which is always safe.
 *
 * A volume's stamps are kept in records of {@linkcode stampShardObjects}
 * objects each (`ov/UID.GENERATION.SHARD`, by object index), and a checkpoint
 * writes only those that changed: the cost follows what changed, and no record
 * outgrows a metadata value whatever the volume's size. A whole-volume record
 * (`ov/UID`, written before shards) still loads, and goes once its shards are
 * written.
 */
import type { NodeDisk } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import { compareStamps, type Stamp } from "./object_link.ts";
import {
  decodeRecords,
  encodeRecord,
  type JournalRecord,
  type JournalStore,
  recordBytes,
} from "./object_journal.ts";

/** Journal bytes after which a checkpoint starts (object_journal.ts). */
export const checkpointBytesDefault = 64 * 1024 * 1024;
/** Objects of one generation whose stamps share a record (about 200 KiB of JSON at most). */
export const stampShardObjects = 4096;

/** The record of `name`'s stamp: `ov/UID.GENERATION.SHARD`. */
function shardKey(name: string): string {
  const { uid, generation, index } = parseObjectName(name);
  return `ov/${uid}.${generation}.${Math.floor(index / stampShardObjects)}`;
}

/** See the module doc. */
export class ReplicaJournal {
  #engine: NodeDisk;
  #store: JournalStore;
  #checkpointBytes: number;
  /** uid → (object name → stamp), loaded from its `ov/` records on first use. */
  #volumes = new Map<string, Promise<Map<string, Stamp>>>();
  /** The loaded ones, for a copy taken without a pause. */
  #loaded = new Map<string, Map<string, Stamp>>();
  /** Version of each `ov/` record read or written. */
  #recordVersions = new Map<string, number>();
  /** Volumes whose whole-volume `ov/UID` record (written before shards) is still there. */
  #whole = new Set<string>();
  /** uid → its shard records changed since the last checkpoint started. */
  #dirty = new Map<string, Set<string>>();
  #persisting = new KeyedMutex();
  /** The journal appended to, its size, and older ones not yet removed. */
  #gen = 0;
  #genBytes = 0;
  #older: number[] = [];
  #checkpointing: Promise<void> | null = null;
  /** Removals recorded whose file is not deleted yet. */
  #removing = new Set<Promise<void>>();

  constructor(engine: NodeDisk, store: JournalStore, checkpointBytes = checkpointBytesDefault) {
    this.#engine = engine;
    this.#store = store;
    this.#checkpointBytes = checkpointBytes;
  }

  /** Replays the journals a crash left, then checkpoints; before any other call. */
  async recover(): Promise<void> {
    const gens = await this.#store.journals();
    const records: JournalRecord[] = [];
    for (const gen of gens) records.push(...decodeRecords(await this.#store.readJournal(gen)));
    // A change placed in its file (synced before its record) covers the ones before it.
    const placed = new Map<string, number>();
    records.forEach((record, i) => record.kind === "placed" && placed.set(record.name, i));
    for (const [i, record] of records.entries()) {
      if (i >= (placed.get(record.name) ?? -1)) await this.#replay(record);
    }
    this.#gen = (gens.at(-1) ?? 0) + 1;
    this.#older = gens;
    if (gens.length > 0) await this.checkpoint();
  }

  stampsOf(uid: string): Promise<Map<string, Stamp>> {
    let stamps = this.#volumes.get(uid);
    if (stamps === undefined) {
      stamps = (async () => {
        const loaded = new Map<string, Stamp>();
        const read = async (key: string) => {
          const entry = await this.#engine.getMeta(key);
          if (entry === null) return false;
          this.#recordVersions.set(key, entry.version);
          const saved = JSON.parse(new TextDecoder().decode(entry.value)) as Record<string, Stamp>;
          for (const [name, stamp] of Object.entries(saved)) loaded.set(name, stamp);
          return true;
        };
        if (await read(`ov/${uid}`)) {
          // Written before shards: its stamps go to shards at the next checkpoint.
          this.#whole.add(uid);
          if (!this.#dirty.has(uid)) this.#dirty.set(uid, new Set());
          for (const name of loaded.keys()) this.#markDirty(name);
        }
        for (const key of await this.#engine.listMeta(`ov/${uid}.`)) await read(key);
        this.#loaded.set(uid, loaded);
        return loaded;
      })();
      this.#volumes.set(uid, stamps);
      stamps.catch(() => this.#volumes.delete(uid));
    }
    return stamps;
  }

  /** The stamps of volume `uid` when loaded already (stampsOf without waiting); else undefined. */
  loadedStampsOf(uid: string): Map<string, Stamp> | undefined {
    return this.#loaded.get(uid);
  }

  /**
   * Journals `record` of a change already applied to its object file (or,
   * for a removal, about to be) and sets its stamp, in one step: no
   * checkpoint falls between. Returns the journal it went to (for a sync).
   */
  record(record: JournalRecord, stamps: Map<string, Stamp>): number {
    const gen = this.append(record); // first: a record that cannot be written moves no stamp
    this.applied(record, stamps);
    return gen;
  }

  /**
   * Sets the stamp of a change applied to its object file whose record comes
   * later (a change written in place: its record once the file is synced).
   */
  applied(record: JournalRecord, stamps: Map<string, Stamp>): void {
    if (record.kind === "drop") stamps.delete(record.name);
    else stamps.set(record.name, record.stamp);
    this.#markDirty(record.name);
  }

  #markDirty(name: string): void {
    const uid = parseObjectName(name).uid;
    let shards = this.#dirty.get(uid);
    if (shards === undefined) this.#dirty.set(uid, shards = new Set());
    shards.add(shardKey(name));
  }

  /** Appends a record whose stamp is set already; returns the journal it went to. */
  append(record: JournalRecord): number {
    this.#store.appendJournal(this.#gen, encodeRecord(record));
    this.#genBytes += recordBytes(record.name, record.kind === "write" ? record.data.length : 0);
    if (this.#genBytes >= this.#checkpointBytes && this.#checkpointing === null) {
      // After the caller's step (a removal registers itself first); a failed
      // checkpoint leaves its journals to the next one, and to replay.
      queueMicrotask(() => this.checkpoint().catch(() => {}));
    }
    return this.#gen;
  }

  /**
   * Records a removal or a hand-off of an object, makes the record durable,
   * then deletes the file: a crash in between replays the deletion, and a
   * checkpoint waits for it (it must not retire the record while the file is
   * still there).
   */
  async remove(
    record: Extract<JournalRecord, { kind: "remove" | "drop" }>,
    stamps: Map<string, Stamp>,
  ): Promise<void> {
    const gen = this.record(record, stamps);
    const task = (async () => {
      await this.#store.syncJournal(gen);
      await this.#engine.deleteObject(record.name);
    })();
    this.#removing.add(task);
    try {
      await task;
    } finally {
      this.#removing.delete(task);
    }
  }

  /** Makes every change recorded so far durable: one sync per journal still holding them. */
  async sync(): Promise<void> {
    await Promise.all([...this.#older, this.#gen].map((gen) => this.#store.syncJournal(gen)));
  }

  /** See the module doc; one at a time. */
  checkpoint(): Promise<void> {
    if (this.#checkpointing !== null) return this.#checkpointing;
    const run = this.#checkpoint().finally(() => {
      this.#checkpointing = null;
      if (this.#genBytes >= this.#checkpointBytes) this.checkpoint().catch(() => {});
    });
    this.#checkpointing = run;
    return run;
  }

  /** Waits for a checkpoint under way. */
  async settle(): Promise<void> {
    await this.#checkpointing?.catch(() => {});
  }

  async #checkpoint(): Promise<void> {
    const retired = [...this.#older, this.#gen];
    this.#gen++;
    this.#genBytes = 0;
    this.#older = retired;
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    const copies = dirty.map(([uid, shards]) =>
      [uid, shardsOf(this.#loaded.get(uid), shards)] as const
    );
    try {
      await Promise.all([...this.#removing]); // a failed one keeps the journals
      await this.#engine.flush();
      for (const [uid, shards] of copies) await this.#persist(uid, shards);
    } catch (error) {
      for (const [uid, shards] of dirty) {
        this.#dirty.set(uid, new Set([...this.#dirty.get(uid) ?? [], ...shards]));
      }
      throw error;
    }
    for (const gen of retired) {
      await this.#store.removeJournal(gen);
      this.#older = this.#older.filter((older) => older !== gen);
    }
  }

  /** Writes the shard records copied (an empty one goes), then drops a whole-volume record. */
  #persist(uid: string, shards: Map<string, Record<string, Stamp>>): Promise<void> {
    return this.#persisting.run(uid, async () => {
      for (const [key, stamps] of shards) {
        const expected = this.#recordVersions.get(key) ?? 0;
        if (Object.keys(stamps).length === 0) {
          if (expected !== 0) await this.#engine.deleteMeta(key, expected);
          this.#recordVersions.delete(key);
          continue;
        }
        const value = new TextEncoder().encode(JSON.stringify(stamps));
        this.#recordVersions.set(key, await this.#engine.putMeta(key, value, expected));
      }
      if (this.#whole.has(uid)) {
        const key = `ov/${uid}`;
        await this.#engine.deleteMeta(key, this.#recordVersions.get(key)!);
        this.#recordVersions.delete(key);
        this.#whole.delete(uid);
      }
    });
  }

  /**
   * Applies a journaled change again. Its bytes go to the object file whatever
   * the stamp there says (every later change follows in the journal, so the
   * file ends as the last durable change left it); stamps only move forward. A
   * placed change's bytes are in the file already.
   */
  async #replay(record: JournalRecord): Promise<void> {
    const uid = parseObjectName(record.name).uid;
    const stamps = await this.stampsOf(uid);
    this.#markDirty(record.name);
    if (record.kind === "drop") {
      stamps.delete(record.name);
      await this.#engine.deleteObject(record.name);
      return;
    }
    if (record.kind === "remove") await this.#engine.deleteObject(record.name);
    else if (record.kind === "write") {
      await this.#engine.writeObject(record.name, record.offset, record.data, {
        truncate: record.truncate,
      });
    }
    if (compareStamps(record.stamp, stamps.get(record.name) ?? [0, 0]) > 0) {
      stamps.set(record.name, record.stamp);
    }
  }
}

/** The stamps of `shards` (record keys) as they are now, each a record's value. */
function shardsOf(
  stamps: Map<string, Stamp> | undefined,
  shards: Set<string>,
): Map<string, Record<string, Stamp>> {
  const copies = new Map<string, Record<string, Stamp>>([...shards].map((key) => [key, {}]));
  for (const [name, stamp] of stamps ?? []) {
    const copy = copies.get(shardKey(name));
    if (copy !== undefined) copy[name] = stamp;
  }
  return copies;
}
