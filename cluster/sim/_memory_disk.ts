/**
 * A node's disk in memory for the cluster simulation, with the crash semantics
 * of the local engine: metadata is durable when `putMeta()` resolves; blocks
 * put and object writes are durable only once `flush()` resolved, appends to a
 * replica journal once `syncJournal()` resolved; deletions are durable at once.
 * A journal's sync covers what was appended when it was called; with
 * `syncDelay` it ends only after that delay, as an `fdatasync` does, so that
 * changes can land while one runs (and are not covered by it). The durable state (the platter) outlives a crash; the
 * disk opened on it before the crash refuses every call afterwards, so a dead
 * process's late writes never land.
 *
 * @module
 */
import {
  type ByteRange,
  CorruptionError,
  isBlockName,
  isMetaKey,
  isObjectName,
  type MetaEntry,
  type NodeDisk,
  VersionMismatchError,
} from "../../core/mod.ts";
import { AssertionError } from "../../core/assert.ts";
import type { JournalStore } from "../data/mod.ts";

/** Free bytes a memory disk reports (healing's reserve is far below). */
const memoryDiskFreeBytes = 1024 ** 4;

/** What survives a crash of a node: its synced blocks, objects and metadata. */
export class MemoryPlatter {
  readonly blocks = new Map<string, { data: Uint8Array; storedAtMs: number }>();
  readonly objects = new Map<string, Uint8Array>();
  readonly meta = new Map<string, MetaEntry>();
  /** Replica journals (object_journal.ts): the synced parts of each generation. */
  readonly journals = new Map<number, Uint8Array[]>();
}

/** Options of {@linkcode MemoryDisk}. */
export interface MemoryDiskOptions {
  platter: MemoryPlatter;
  /** The node's monotonic clock (block ages). */
  now: () => number;
  /** How long a journal's sync runs (the simulation's time); none: it ends at once. */
  syncDelay?: () => Promise<void>;
}

/** A disk in memory with crash semantics; see the module doc. */
export class MemoryDisk implements NodeDisk, JournalStore {
  readonly platter: MemoryPlatter;
  #now: () => number;
  /** Blocks put since the last flush. */
  #unsyncedBlocks = new Map<string, Uint8Array>();
  /** Objects as written, synced or not; names written since the last flush. */
  #objects: Map<string, Uint8Array>;
  #dirtyObjects = new Set<string>();
  /** Journal appends not synced yet, by generation (a crash loses them). */
  #unsyncedJournals = new Map<number, Uint8Array[]>();
  /** Per generation, parts appended and parts made durable by this disk (syncs in order). */
  #journalParts = new Map<number, { appended: number; synced: number }>();
  #syncDelay: (() => Promise<void>) | undefined;
  /** Journal syncs under way, by generation. */
  #syncing = new Map<number, number>();
  /** Appends to a journal while a sync of it ran (so not covered by that sync). */
  appendsDuringSyncs = 0;
  #crashed = false;

  constructor(options: MemoryDiskOptions) {
    this.platter = options.platter;
    this.#now = options.now;
    this.#syncDelay = options.syncDelay;
    this.#objects = new Map([...this.platter.objects].map(([name, data]) => [name, data.slice()]));
  }

  /** The process died: unsynced writes are gone and this disk refuses every call. */
  crash(): void {
    this.#crashed = true;
  }

  hasBlock(hash: string): Promise<boolean> {
    this.#check(isBlockName(hash), hash);
    return Promise.resolve(this.#unsyncedBlocks.has(hash) || this.platter.blocks.has(hash));
  }

  putBlock(hash: string, data: Uint8Array): Promise<boolean> {
    this.#check(isBlockName(hash), hash);
    if (this.#unsyncedBlocks.has(hash)) return Promise.resolve(false);
    const stored = this.platter.blocks.get(hash);
    if (stored !== undefined) {
      stored.storedAtMs = this.#now(); // young again, as the local engine's utimes
      return Promise.resolve(false);
    }
    this.#unsyncedBlocks.set(hash, data.slice());
    return Promise.resolve(true);
  }

  readBlock(hash: string, range: ByteRange, into: Uint8Array): Promise<void> {
    this.#check(isBlockName(hash) && into.length === range.length, hash);
    const data = this.#blockData(hash);
    if (range.offset + range.length > data.length) {
      throw new CorruptionError(
        `Cannot read block ${hash}: ${range.length} bytes at ${range.offset} asked, ` +
          `${data.length} stored`,
      );
    }
    into.set(data.subarray(range.offset, range.offset + range.length));
    return Promise.resolve();
  }

  blockSize(hash: string): Promise<number> {
    this.#check(isBlockName(hash), hash);
    return Promise.resolve(this.#blockData(hash).length);
  }

  deleteBlock(hash: string): Promise<void> {
    this.#check(isBlockName(hash), hash);
    this.#unsyncedBlocks.delete(hash);
    this.platter.blocks.delete(hash);
    return Promise.resolve();
  }

  deleteBlockIfOlderThan(hash: string, minAgeMs: number): boolean {
    this.#check(isBlockName(hash), hash);
    if (this.#unsyncedBlocks.has(hash)) return false;
    const stored = this.platter.blocks.get(hash);
    if (stored === undefined) return true;
    if (this.#now() - stored.storedAtMs < minAgeMs) return false;
    this.platter.blocks.delete(hash);
    return true;
  }

  async *listBlocks(): AsyncIterable<string> {
    this.#check(true, "");
    yield* [...new Set([...this.#unsyncedBlocks.keys(), ...this.platter.blocks.keys()])].sort();
  }

  readObject(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    this.#check(isObjectName(name) && into.length === range.length, name);
    const data = this.#objects.get(name) ?? new Uint8Array();
    const got = data.subarray(range.offset, range.offset + range.length);
    into.set(got);
    into.fill(0, got.length);
    return Promise.resolve();
  }

  writeObject(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean } = {},
  ): Promise<void> {
    this.#check(isObjectName(name), name);
    let object = options.truncate ? new Uint8Array() : this.#objects.get(name) ?? new Uint8Array();
    if (object.length < offset + data.length) {
      const grown = new Uint8Array(offset + data.length);
      grown.set(object);
      object = grown;
    }
    object.set(data, offset);
    this.#objects.set(name, object);
    this.#dirtyObjects.add(name);
    return Promise.resolve();
  }

  /** writeObject, done at once (the memory disk has nothing to wait for). */
  async startObjectWrite(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean } = {},
  ): Promise<{ written: Promise<void> }> {
    await this.writeObject(name, offset, data, options);
    return { written: Promise.resolve() };
  }

  deleteObject(name: string): Promise<void> {
    this.#check(isObjectName(name), name);
    this.#objects.delete(name);
    this.#dirtyObjects.delete(name);
    this.platter.objects.delete(name);
    return Promise.resolve();
  }

  objectSize(name: string): Promise<number> {
    this.#check(isObjectName(name), name);
    return Promise.resolve(this.#objects.get(name)?.length ?? 0);
  }

  async *listObjects(): AsyncIterable<string> {
    this.#check(true, "");
    yield* [...this.#objects.keys()].sort();
  }

  getMeta(key: string): Promise<MetaEntry | null> {
    this.#check(isMetaKey(key), key);
    const entry = this.platter.meta.get(key);
    return Promise.resolve(
      entry === undefined ? null : { version: entry.version, value: entry.value.slice() },
    );
  }

  putMeta(key: string, value: Uint8Array, expectedVersion: number): Promise<number> {
    this.#check(isMetaKey(key), key);
    const version = this.platter.meta.get(key)?.version ?? 0;
    if (version !== expectedVersion) {
      return Promise.reject(
        new VersionMismatchError(
          `Cannot update ${key}: version is ${version}, expected ${expectedVersion}`,
        ),
      );
    }
    this.platter.meta.set(key, { version: version + 1, value: value.slice() });
    return Promise.resolve(version + 1);
  }

  deleteMeta(key: string, expectedVersion: number): Promise<void> {
    this.#check(isMetaKey(key), key);
    const version = this.platter.meta.get(key)?.version ?? 0;
    if (version !== expectedVersion) {
      return Promise.reject(
        new VersionMismatchError(
          `Cannot delete ${key}: version is ${version}, expected ${expectedVersion}`,
        ),
      );
    }
    this.platter.meta.delete(key);
    return Promise.resolve();
  }

  listMeta(prefix: string): Promise<string[]> {
    this.#check(prefix.indexOf("/") > 0, prefix);
    return Promise.resolve(
      [...this.platter.meta.keys()].filter((key) => key.startsWith(prefix)).sort(),
    );
  }

  flush(): Promise<void> {
    this.#check(true, "");
    for (const [hash, data] of this.#unsyncedBlocks) {
      this.platter.blocks.set(hash, { data, storedAtMs: this.#now() });
    }
    this.#unsyncedBlocks.clear();
    for (const name of this.#dirtyObjects) {
      this.platter.objects.set(name, this.#objects.get(name)!.slice());
    }
    this.#dirtyObjects.clear();
    return Promise.resolve();
  }

  async close(): Promise<void> {
    await this.flush();
    this.#crashed = true;
  }

  freeBytes(): number {
    return memoryDiskFreeBytes;
  }

  syncObjects(names: string[]): Promise<void> {
    this.#check(names.every(isObjectName), names.join(" "));
    for (const name of names) {
      if (!this.#dirtyObjects.delete(name)) continue;
      const data = this.#objects.get(name);
      if (data === undefined) this.platter.objects.delete(name);
      else this.platter.objects.set(name, data.slice());
    }
    return Promise.resolve();
  }

  journals(): Promise<number[]> {
    this.#check(true, "");
    const gens = new Set([...this.platter.journals.keys(), ...this.#unsyncedJournals.keys()]);
    return Promise.resolve([...gens].sort((a, b) => a - b));
  }

  readJournal(gen: number): Promise<Uint8Array> {
    this.#check(true, "");
    const parts = [
      ...this.platter.journals.get(gen) ?? [],
      ...this.#unsyncedJournals.get(gen) ?? [],
    ];
    const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
    let at = 0;
    for (const part of parts) {
      bytes.set(part, at);
      at += part.length;
    }
    return Promise.resolve(bytes);
  }

  appendJournal(gen: number, parts: Uint8Array[]): void {
    this.#check(true, "");
    let unsynced = this.#unsyncedJournals.get(gen);
    if (unsynced === undefined) this.#unsyncedJournals.set(gen, unsynced = []);
    for (const part of parts) unsynced.push(part.slice());
    this.#partsOf(gen).appended += parts.length;
    if ((this.#syncing.get(gen) ?? 0) > 0) this.appendsDuringSyncs++;
  }

  async syncJournal(gen: number): Promise<void> {
    this.#check(true, "");
    const counts = this.#partsOf(gen);
    const covers = counts.appended;
    if (this.#syncDelay !== undefined) {
      this.#syncing.set(gen, (this.#syncing.get(gen) ?? 0) + 1);
      try {
        await this.#syncDelay();
      } finally {
        this.#syncing.set(gen, this.#syncing.get(gen)! - 1);
      }
      this.#check(true, "");
    }
    // What was appended when the sync began, in order (a later sync covers more).
    const unsynced = this.#unsyncedJournals.get(gen);
    const count = covers - counts.synced;
    if (unsynced === undefined || count <= 0 || this.#journalParts.get(gen) !== counts) return;
    const synced = this.platter.journals.get(gen) ?? [];
    this.platter.journals.set(gen, synced.concat(unsynced.splice(0, count)));
    counts.synced += count;
  }

  removeJournal(gen: number): Promise<void> {
    this.#check(true, "");
    this.#unsyncedJournals.delete(gen);
    this.#journalParts.delete(gen);
    this.platter.journals.delete(gen);
    return Promise.resolve();
  }

  #partsOf(gen: number): { appended: number; synced: number } {
    let counts = this.#journalParts.get(gen);
    if (counts === undefined) this.#journalParts.set(gen, counts = { appended: 0, synced: 0 });
    return counts;
  }

  closeJournals(): void {}

  #blockData(hash: string): Uint8Array {
    const data = this.#unsyncedBlocks.get(hash) ?? this.platter.blocks.get(hash)?.data;
    if (data === undefined) {
      throw new CorruptionError(`Cannot read block ${hash}: it is not stored`);
    }
    return data;
  }

  /** Refuses a call after a crash (an error, not an assertion: a dead process's late call). */
  #check(valid: boolean, what: string): void {
    if (this.#crashed) throw new Error(`Cannot use the disk: its process crashed`);
    if (!valid) throw new AssertionError(`bad name or range: ${what}`);
  }
}
