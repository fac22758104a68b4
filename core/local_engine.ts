/**
 * The local engine: blocks, objects and metadata as files in one data directory.
 *
 * ```
 * DIR/LOCK                      flock()ed while a node owns DIR
 * DIR/blocks/ab/abcd…(64 hex)   content blocks, written once: tmp, fdatasync, rename
 * DIR/objects/UID/GEN.INDEX     volume objects, written in place, sparse
 * DIR/meta/KIND/NAME            versioned metadata: header + value, tmp + rename
 * DIR/tmp/                      half-written files, removed at open
 * ```
 *
 * Crash safety: a block's bytes are fdatasync()ed before it is renamed into
 * place, so a block visible after a crash is whole; flush() then fsyncs the
 * directories so that the renames themselves survive. Metadata is durable when
 * putMeta() resolves.
 *
 * Object files are _object_files.ts's, metadata files _meta_files.ts's, blocks
 * waiting for their sync _pending_blocks.ts's; file primitives are in _file_io.ts.
 */
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import { assert } from "./assert.ts";
import type { ByteRange, MetaEntry, NodeDisk } from "./engine.ts";
import { isBlockName } from "./engine.ts";
import { CorruptionError } from "./errors.ts";
import { Mutex } from "./_mutex.ts";
import { FdCache } from "./_fd_cache.ts";
import { DirectWrites } from "./_direct_writes.ts";
import { openFilesMax } from "./limits.ts";
import { syncDir, unlinkIfPresent, writeAll } from "./_file_io.ts";
import { MetaFiles } from "./_meta_files.ts";
import { ObjectFiles, startRoomBytesDefault } from "./_object_files.ts";
import { PendingBlocks } from "./_pending_blocks.ts";
import { type DiskUsage, diskUsage } from "./_disk_usage.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

/** Options of {@linkcode LocalEngine.open}. */
export interface LocalEngineOptions {
  /** The data directory; created when missing. */
  dir: string;
  /**
   * Files kept open at once (default {@linkcode openFilesMax}); a node sizes it
   * from its open-files limit so that its connections keep descriptors too.
   */
  openFilesMax?: number;
  /**
   * Free bytes below which a replica's large changes are written before they
   * are answered, not after (default {@linkcode startRoomBytesDefault}; tests
   * set it below zero, so that writes that cannot fit start all the same and
   * meet a full disk after their answer): _object_files.ts, start().
   */
  startRoomBytes?: number;
}

/** Engine over files in one directory, owned by one process at a time. */
export class LocalEngine implements NodeDisk {
  readonly dir: string;
  #lock: Deno.FsFile;
  #files: FdCache;
  #meta: MetaFiles;
  #objects: ObjectFiles;
  /** New blocks' bytes around the page cache (_direct_writes.ts); null where refused. */
  #direct: DirectWrites | null;
  #dirtyDirs = new Set<string>();
  /** Blocks put since the last flush: their temporary file and its sync, once started. */
  #unsynced = new PendingBlocks();
  #flushing = new Mutex();
  #tmpCounter = 0;
  #closed = false;

  private constructor(dir: string, lock: Deno.FsFile, options: LocalEngineOptions) {
    this.dir = dir;
    this.#lock = lock;
    this.#files = new FdCache(options.openFilesMax ?? openFilesMax);
    this.#meta = new MetaFiles(dir, () => this.#tmpPath());
    this.#direct = DirectWrites.probe(join(dir, "tmp"));
    if (this.#direct === null) {
      log.warn("data directory {dir} refuses O_DIRECT: every write goes through the page cache", {
        dir,
      });
    }
    this.#objects = new ObjectFiles(dir, this.#files, this.#direct, {
      dirChanged: (objectDir) => this.#dirtyDirs.add(objectDir),
      startRoomBytes: options.startRoomBytes ?? startRoomBytesDefault,
    });
  }

  /** Opens (creating) a data directory and takes its lock. */
  static async open(options: LocalEngineOptions): Promise<LocalEngine> {
    const dir = resolve(options.dir);
    for (const sub of ["blocks", "objects", "meta", "tmp"]) {
      fs.mkdirSync(join(dir, sub), { recursive: true });
    }
    const lock = Deno.openSync(join(dir, "LOCK"), { create: true, write: true });
    if (!lock.tryLockSync(true)) {
      lock.close();
      throw new Error(`Cannot open data directory ${dir}: another process holds its lock`);
    }
    fs.rmSync(join(dir, "tmp"), { recursive: true, force: true });
    fs.mkdirSync(join(dir, "tmp"));
    await syncDir(dir);
    return new LocalEngine(dir, lock, options);
  }

  hasBlock(hash: string): Promise<boolean> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    return Promise.resolve(this.#unsynced.has(hash) || fs.existsSync(this.#blockPath(hash)));
  }

  /**
   * Writes the block to a temporary file. flush() syncs it and only then renames
   * it into place, so a block visible after a crash is always whole, and an
   * upload pays for one sync pass at its end rather than one per block. The
   * write runs off the event loop (_direct_writes.ts); a put of a block being
   * written waits for it (and writes it itself if that write failed).
   */
  putBlock(hash: string, data: Uint8Array): Promise<boolean> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    if (this.#unsynced.has(hash)) return Promise.resolve(false);
    const writing = this.#unsynced.writing(hash);
    if (writing !== undefined) return writing.then(() => false, () => this.putBlock(hash, data));
    if (fs.existsSync(this.#blockPath(hash))) {
      // Stored again (deduplicated): it is young again, so a cluster's garbage
      // collection, which spares young blocks, cannot take it from under this put.
      const now = new Date();
      try {
        fs.utimesSync(this.#blockPath(hash), now, now);
      } catch { /* deleted meanwhile: the caller's next put stores it */ }
      return Promise.resolve(false);
    }
    return this.#unsynced.write(hash, () => this.#writeBlock(data));
  }

  /** Writes a block to a new temporary file; returns its path. */
  async #writeBlock(data: Uint8Array): Promise<string> {
    const tmp = this.#tmpPath();
    const fd = fs.openSync(tmp, "w", 0o644);
    try {
      // A new block's bytes go around the page cache (_direct_writes.ts), its tail through it.
      const direct = await this.#direct?.writePrefixAsync(tmp, data, 0, "block") ?? 0;
      writeAll(fd, direct === 0 ? data : data.subarray(direct), direct);
    } catch (error) {
      // A partial block (a full disk) must not hold on to the space it took.
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw error;
    }
    fs.closeSync(fd);
    return tmp;
  }

  /** A large read runs on the thread pool (_fd_cache.ts); a block never changes meanwhile. */
  async readBlock(hash: string, range: ByteRange, into: Uint8Array): Promise<void> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    assert(into.length === range.length);
    const path = this.#unsynced.tmpOf(hash) ?? this.#blockPath(hash);
    const got = await this.#files.read(path, into, range.offset, { writable: false });
    if (got === null) throw new CorruptionError(`Cannot read block ${hash}: it is not stored`);
    if (got !== range.length) {
      throw new CorruptionError(
        `Cannot read block ${hash}: ${range.length} bytes at ${range.offset} asked, ${got} stored`,
      );
    }
  }

  /**
   * Deletes a block unless it was stored (or stored again) less than `minAgeMs`
   * ago, or is still being written; true when it is gone.
   */
  deleteBlockIfOlderThan(hash: string, minAgeMs: number): boolean {
    assert(isBlockName(hash), `bad block name ${hash}`);
    if (this.#unsynced.has(hash) || this.#unsynced.writing(hash) !== undefined) return false;
    const path = this.#blockPath(hash);
    let modified: number;
    try {
      modified = fs.statSync(path).mtimeMs;
    } catch {
      return true; // not here
    }
    if (Date.now() - modified < minAgeMs) return false;
    this.#files.forget(path);
    if (unlinkIfPresent(path)) this.#dirtyDirs.add(join(this.dir, "blocks", hash.slice(0, 2)));
    return true;
  }

  /** Free bytes on the file system holding the data directory. */
  freeBytes(): number {
    const stats = fs.statfsSync(this.dir);
    return stats.bavail * stats.bsize;
  }

  /** Counts the blocks and objects stored here (a walk of the directory: /metrics, not often). */
  usage(): Promise<DiskUsage> {
    return diskUsage(this.dir);
  }

  /** Bytes of a stored block (whole blocks cross the network in a cluster). */
  blockSize(hash: string): Promise<number> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    const path = this.#unsynced.tmpOf(hash) ?? this.#blockPath(hash);
    try {
      return Promise.resolve(fs.statSync(path).size);
    } catch (error) {
      if ((error as { code?: string }).code === "ENOENT") {
        throw new CorruptionError(`Cannot size block ${hash}: it is not stored`);
      }
      throw error;
    }
  }

  deleteBlock(hash: string): Promise<void> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    const unsynced = this.#unsynced.tmpOf(hash);
    if (unsynced !== undefined) {
      this.#unsynced.delete(hash);
      this.#files.forget(unsynced);
      fs.rmSync(unsynced, { force: true });
      return Promise.resolve();
    }
    const path = this.#blockPath(hash);
    this.#files.forget(path);
    if (unlinkIfPresent(path)) this.#dirtyDirs.add(join(this.dir, "blocks", hash.slice(0, 2)));
    return Promise.resolve();
  }

  async *listBlocks(): AsyncIterable<string> {
    yield* this.#unsynced.hashes();
    const root = join(this.dir, "blocks");
    for (const prefix of fs.readdirSync(root).sort()) {
      for (const name of fs.readdirSync(join(root, prefix)).sort()) {
        if (isBlockName(name)) yield name;
      }
    }
  }

  readObject(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    return this.#objects.read(name, range, into);
  }

  writeObject(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; direct?: boolean } = {},
  ): Promise<void> {
    return this.#objects.write(name, offset, data, options);
  }

  startObjectWrite(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean } = {},
  ): Promise<{ written: Promise<void> }> {
    return this.#objects.start(name, offset, data, options);
  }

  deleteObject(name: string): Promise<void> {
    return this.#objects.delete(name);
  }

  /** Bytes an object spans (0 when missing): what a replica copies to repair another. */
  objectSize(name: string): Promise<number> {
    return this.#objects.size(name);
  }

  listObjects(): AsyncIterable<string> {
    return this.#objects.list();
  }

  getMeta(key: string): Promise<MetaEntry | null> {
    return Promise.resolve(this.#meta.read(key));
  }

  putMeta(key: string, value: Uint8Array, expectedVersion: number): Promise<number> {
    return this.#meta.put(key, value, expectedVersion);
  }

  deleteMeta(key: string, expectedVersion: number): Promise<void> {
    return this.#meta.delete(key, expectedVersion);
  }

  listMeta(prefix: string): Promise<string[]> {
    return Promise.resolve(this.#meta.list(prefix));
  }

  flush(): Promise<void> {
    return this.#flushing.run(async () => {
      await this.#unsynced.settleAll((hash, tmp) => this.#placeBlock(hash, tmp));
      await this.#objects.settle();
      const dirs = [...this.#dirtyDirs];
      this.#dirtyDirs.clear();
      await this.#files.syncAll();
      await Promise.all(dirs.map(syncDir));
    });
  }

  syncObjects(names: string[]): Promise<void> {
    return this.#flushing.run(async () => {
      const dirs = [...this.#dirtyDirs];
      this.#dirtyDirs.clear();
      await this.#objects.sync(names);
      await Promise.all(dirs.map(syncDir));
    });
  }

  /** Renames a synced block's temporary file into place. */
  #placeBlock(hash: string, tmp: string): void {
    const dir = join(this.dir, "blocks", hash.slice(0, 2));
    fs.mkdirSync(dir, { recursive: true });
    fs.renameSync(tmp, this.#blockPath(hash));
    this.#files.forget(tmp);
    this.#dirtyDirs.add(dir);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#unsynced.settleWrites();
    await this.flush();
    this.#files.closeAll();
    this.#lock.close();
  }

  #blockPath(hash: string): string {
    return join(this.dir, "blocks", hash.slice(0, 2), hash);
  }

  #tmpPath(): string {
    return join(this.dir, "tmp", `${Deno.pid}.${++this.#tmpCounter}`);
  }
}
