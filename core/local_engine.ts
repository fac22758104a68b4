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
 * Block files are _block_files.ts's, object files _object_files.ts's, metadata
 * files _meta_files.ts's; file primitives are in _file_io.ts.
 */
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import type { ByteRange, MetaEntry, NodeDisk } from "./engine.ts";
import { Mutex } from "./_mutex.ts";
import { FdCache } from "./_fd_cache.ts";
import { DirectWrites } from "./_direct_writes.ts";
import { openFilesMax } from "./limits.ts";
import { syncDir } from "./_file_io.ts";
import { MetaFiles } from "./_meta_files.ts";
import { ObjectFiles, startRoomBytesDefault } from "./_object_files.ts";
import { BlockFiles } from "./_block_files.ts";
import { diskSpace, type DiskUsage, diskUsage } from "./_disk_usage.ts";
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
  #blocks: BlockFiles;
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
    this.#blocks = new BlockFiles(dir, this.#files, this.#direct, {
      dirChanged: (blockDir) => this.#dirtyDirs.add(blockDir),
      tmpPath: () => this.#tmpPath(),
    });
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
    return this.#blocks.has(hash);
  }

  /**
   * Writes the block to a temporary file; flush() syncs it and only then
   * renames it into place (_block_files.ts).
   */
  putBlock(hash: string, data: Uint8Array): Promise<boolean> {
    return this.#blocks.put(hash, data);
  }

  readBlock(hash: string, range: ByteRange, into: Uint8Array): Promise<void> {
    return this.#blocks.read(hash, range, into);
  }

  deleteBlockIfOlderThan(hash: string, minAgeMs: number): boolean {
    return this.#blocks.deleteIfOlderThan(hash, minAgeMs);
  }

  /** Free bytes on the file system holding the data directory. */
  freeBytes(): number {
    return diskSpace(this.dir).freeBytes;
  }

  /** Counts the blocks and objects stored here (a walk of the directory: /metrics, not often). */
  usage(): Promise<DiskUsage> {
    return diskUsage(this.dir);
  }

  blockSize(hash: string): Promise<number> {
    return this.#blocks.size(hash);
  }

  deleteBlock(hash: string): Promise<void> {
    return this.#blocks.delete(hash);
  }

  listBlocks(): AsyncIterable<string> {
    return this.#blocks.list();
  }

  readObject(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    return this.#objects.read(name, range, into);
  }

  writeObject(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; direct?: boolean | "extending" } = {},
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
      await this.#blocks.settleAll();
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

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#blocks.settleWrites();
    await this.flush();
    this.#files.closeAll();
    this.#lock.close();
  }

  #tmpPath(): string {
    return join(this.dir, "tmp", `${Deno.pid}.${++this.#tmpCounter}`);
  }
}
