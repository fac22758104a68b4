/**
 * The engine is the seam Archipelago calls the "blocker": the core never knows
 * whether a block is on this disk, on three peers, or in an object store. It has
 * three kinds of things, each with its own rules:
 *
 * - content blocks: immutable, named by the lowercase hex SHA-256 of their bytes,
 *   stored once; a block that is visible is whole.
 * - objects: a volume's private, mutable, fixed-size areas, written in place;
 *   never-written bytes read as zeros.
 * - metadata: small-to-large versioned values changed by compare-and-set.
 *
 * Every implementation passes the shared contract suite in
 * `engine_contract.ts`.
 */

/** A byte range inside a block or an object. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** How Engine.readObject may read an object (each option: see there). */
export interface ReadObjectOptions {
  existing?: boolean;
  view?: string;
  frozen?: boolean;
  orphaned?: boolean;
  extent?: number;
}

/** A metadata value with the version that a compare-and-set must name. */
export interface MetaEntry {
  version: number;
  value: Uint8Array;
}

/** Storage back end of a node: local files, a ring of peers, an object store. */
export interface Engine {
  /** True when the block named `hash` is stored. */
  hasBlock(hash: string): Promise<boolean>;
  /**
   * Stores a block under its name; returns false when it was already stored.
   * The caller vouches that `hash` is the SHA-256 of `data`.
   * The block is durable once {@linkcode Engine.flush} resolves.
   */
  putBlock(hash: string, data: Uint8Array): Promise<boolean>;
  /** Reads `range` of a stored block into `into` (whose length is range.length). */
  readBlock(hash: string, range: ByteRange, into: Uint8Array): Promise<void>;
  /** Removes a block; removing a missing block is not an error. */
  deleteBlock(hash: string): Promise<void>;
  /** Every stored block name. */
  listBlocks(): AsyncIterable<string>;

  /**
   * Reads `range` of an object into `into`; never-written bytes read as zeros.
   * `existing`: the caller knows the object was written (a map names it); an
   * engine that finds no copy of it then refuses, instead of answering zeros.
   * `view`: nothing changes the object between reads under the same view (a
   * volume nobody may write, at one lease epoch): an engine may read it again
   * from the copy it found newest under that view, without asking the others.
   * `frozen`: no writer changes the object any more (a snapshot's, one of an
   * earlier generation than its volume's): an engine may reuse what it learnt
   * of it since the caller knew it frozen. `orphaned`: the volume's writer is
   * gone without releasing it, and may have put its last writes where this
   * node would not look (it placed objects by its own view of the members): an
   * engine that spreads copies must find the newest among all of them.
   * `extent`: the most bytes the object can hold (its volume's block size): an
   * engine that fetches the object from elsewhere may fetch that much of it
   * ahead of the reads to come.
   */
  readObject(
    name: string,
    range: ByteRange,
    into: Uint8Array,
    options?: ReadObjectOptions,
  ): Promise<void>;
  /**
   * Writes `data` at `offset` in an object, creating it when missing. With
   * `truncate`, whatever the object held before is discarded first, so the
   * rest of it reads as zeros. `existing`: the caller knows the object was
   * written before (a write in place); an engine that cannot find any copy of
   * it then refuses, instead of writing into an empty object. `direct`: a
   * hint that these bytes are not read here soon (a replica's copy of a change
   * its writer made on another node): an engine may write them around its
   * cache; `"extending"`, the same for a write that only adds bytes (at or
   * past the object's end, or with `truncate`: a volume's first fill), where
   * an overwrite of bytes the object holds stays cached. `epoch`: the write
   * lease epoch of the volume instance writing (its record's lease); an
   * engine that fences writers by epoch refuses the write (LeaseLostError)
   * unless it writes the volume under that epoch now, so that an instance
   * dropped when its lease moved away cannot write under the lease its node
   * took again since.
   */
  writeObject(
    name: string,
    offset: number,
    data: Uint8Array,
    options?: {
      truncate?: boolean;
      existing?: boolean;
      direct?: boolean | "extending";
      epoch?: number;
    },
  ): Promise<void>;
  /**
   * Removes an object; removing a missing object is not an error. `epoch`:
   * as for writeObject.
   */
  deleteObject(name: string, options?: { epoch?: number }): Promise<void>;
  /** Every stored object name. */
  listObjects(): AsyncIterable<string>;

  /** The value stored at `key`, or null. */
  getMeta(key: string): Promise<MetaEntry | null>;
  /**
   * Stores `value` at `key` when its current version is `expectedVersion` (0 for
   * "must not exist"), durably, and returns the new version. Throws
   * VersionMismatchError otherwise.
   */
  putMeta(key: string, value: Uint8Array, expectedVersion: number): Promise<number>;
  /** Deletes `key` when its version is `expectedVersion`; throws VersionMismatchError otherwise. */
  deleteMeta(key: string, expectedVersion: number): Promise<void>;
  /**
   * Keys that start with `prefix`, sorted. `settled`: none can appear later
   * from a write that failed before this call (in a cluster, a value its
   * proposer left on too few acceptors is chosen now or never): garbage
   * collection's marks, which must not sweep what such a record names.
   */
  listMeta(prefix: string, options?: { settled?: boolean }): Promise<string[]>;

  /**
   * Makes every block put and object write that resolved before this call
   * durable; with `volume` (a volume's uid), at least that volume's object
   * writes. A cluster engine throws WritesLostError when writes it acknowledged
   * are gone from every copy.
   */
  flush(volume?: string): Promise<void>;
  /**
   * Optional: blocks stored for one caller (an upload) that become durable
   * together, at the batch's settle(), instead of each at once (a cluster
   * engine makes each block it puts durable on its replicas before answering,
   * since a flush could not tell which replicas restarted since). Without it,
   * putBlock and flush.
   */
  blockBatch?(): BlockBatch;
  /** Releases files and locks; the engine is unusable afterwards. */
  close(): Promise<void>;
}

/** See Engine.blockBatch. */
export interface BlockBatch {
  /** Stores a block as Engine.putBlock does; durable only once settle() resolves. */
  put(hash: string, data: Uint8Array): Promise<boolean>;
  /**
   * Makes every block put() resolved for durable; throws when that cannot be
   * shown for some (a replica restarted and lost blocks it took): store them again.
   * Settles once: a later call gets the same outcome.
   */
  settle(): Promise<void>;
}

/**
 * A node's own disk as the cluster uses it: an engine, plus what replication,
 * healing and cluster garbage collection need of it. {@linkcode LocalEngine}
 * (files) is one; the deterministic simulation's memory disk is another.
 * Accesses of one object take effect in the order they are asked: a read
 * returns every change asked before it and none asked after it, however long
 * either takes (a replica's reads rely on it: cluster/data/object_service.ts).
 */
export interface NodeDisk extends Engine {
  /**
   * Deletes a block unless it was stored (or stored again) less than
   * `minAgeMs` ago, or is still being written; true when it is gone.
   */
  deleteBlockIfOlderThan(hash: string, minAgeMs: number): boolean;
  /** Bytes of a stored block; throws CorruptionError when it is not stored. */
  blockSize(hash: string): Promise<number>;
  /** Bytes an object spans (0 when missing). */
  objectSize(name: string): Promise<number>;
  /**
   * Makes the writes of the named objects that resolved before this call
   * durable (their files and directory entries), not everything as flush does.
   */
  syncObjects(names: string[]): Promise<void>;
  /**
   * writeObject with `direct`, answered before its bytes are written: it
   * resolves once every access of the object asked afterwards (reads, changes,
   * syncObjects, flush) waits for the write, and `written` settles once it is
   * done; `data` must not change until then. A write that fails rejects
   * `written`, and the object's reads, syncs and changes then throw until it
   * is deleted or written whole again (`truncate`).
   */
  startObjectWrite(
    name: string,
    offset: number,
    data: Uint8Array,
    options?: { truncate?: boolean },
  ): Promise<{ written: Promise<void> }>;
  /** Bytes free for new data (healing keeps a reserve). */
  freeBytes(): number;
}

const hashPattern = /^[0-9a-f]{64}$/;
const objectNamePattern = /^[0-9a-f]{32}\.[0-9]{1,10}\.[0-9]{1,10}$/;
const metaKeyPattern = /^[a-z]+\/[A-Za-z0-9][A-Za-z0-9._@-]{0,300}$/;

/** True for a content block name: 64 lowercase hex digits. */
export function isBlockName(hash: string): boolean {
  return hashPattern.test(hash);
}

/** True for an object name: `UID.GENERATION.INDEX` (see block_map.ts). */
export function isObjectName(name: string): boolean {
  return objectNamePattern.test(name);
}

/** True for a metadata key: `kind/NAME`, e.g. `volume/vm1` or `snapshot/vm1@s1`. */
export function isMetaKey(key: string): boolean {
  return metaKeyPattern.test(key);
}
