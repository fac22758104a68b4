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
 */
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { assert } from "./assert.ts";
import type { ByteRange, MetaEntry, NodeDisk } from "./engine.ts";
import { isBlockName, isMetaKey, isObjectName } from "./engine.ts";
import { CorruptionError, VersionMismatchError } from "./errors.ts";
import { KeyedMutex, Mutex } from "./_mutex.ts";
import { FdCache } from "./_fd_cache.ts";
import { metaValueBytesMax, openFilesMax } from "./limits.ts";

const fdatasync = promisify(fs.fdatasync);
const fsync = promisify(fs.fsync);
const ftruncate = promisify(fs.ftruncate);

const metaMagic = 0x41544d31; // "ATM1"
const metaHeaderBytes = 16; // magic u32, version u32, value length f64

/** Options of {@linkcode LocalEngine.open}. */
export interface LocalEngineOptions {
  /** The data directory; created when missing. */
  dir: string;
  /**
   * Files kept open at once (default {@linkcode openFilesMax}); a node sizes it
   * from its open-files limit so that its connections keep descriptors too.
   */
  openFilesMax?: number;
}

/** Engine over files in one directory, owned by one process at a time. */
export class LocalEngine implements NodeDisk {
  readonly dir: string;
  #lock: Deno.FsFile;
  #files: FdCache;
  #metaLocks = new KeyedMutex();
  #dirtyDirs = new Set<string>();
  /** Blocks put since the last flush, by hash: their temporary file and its sync, once started. */
  #unsynced = new Map<string, { tmp: string; synced: Promise<void> | null }>();
  /** Blocks waiting for a background sync, and how many syncs run. */
  #writebackQueue: { tmp: string; synced: Promise<void> | null }[] = [];
  #writebacksRunning = 0;
  #flushing = new Mutex();
  #tmpCounter = 0;
  /** Object directories known to exist. */
  #objectDirs = new Set<string>();
  #closed = false;

  private constructor(dir: string, lock: Deno.FsFile, filesMax: number) {
    this.dir = dir;
    this.#lock = lock;
    this.#files = new FdCache(filesMax);
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
    return new LocalEngine(dir, lock, options.openFilesMax ?? openFilesMax);
  }

  hasBlock(hash: string): Promise<boolean> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    return Promise.resolve(this.#unsynced.has(hash) || fs.existsSync(this.#blockPath(hash)));
  }

  /**
   * Writes the block to a temporary file. flush() syncs it and only then renames
   * it into place, so a block visible after a crash is always whole, and an
   * upload pays for one sync pass at its end rather than one per block.
   */
  putBlock(hash: string, data: Uint8Array): Promise<boolean> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    if (this.#unsynced.has(hash)) return Promise.resolve(false);
    if (fs.existsSync(this.#blockPath(hash))) {
      // Stored again (deduplicated): it is young again, so a cluster's garbage
      // collection, which spares young blocks, cannot take it from under this put.
      const now = new Date();
      try {
        fs.utimesSync(this.#blockPath(hash), now, now);
      } catch { /* deleted meanwhile: the caller's next put stores it */ }
      return Promise.resolve(false);
    }
    const tmp = this.#tmpPath();
    const fd = fs.openSync(tmp, "w", 0o644);
    try {
      writeAll(fd, data, 0);
    } catch (error) {
      // A partial block (a full disk) must not hold on to the space it took.
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw error;
    }
    fs.closeSync(fd);
    const block = { tmp, synced: null as Promise<void> | null };
    this.#unsynced.set(hash, block);
    this.#startWriteback(block);
    return Promise.resolve(true);
  }

  readBlock(hash: string, range: ByteRange, into: Uint8Array): Promise<void> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    assert(into.length === range.length);
    const path = this.#unsynced.get(hash)?.tmp ?? this.#blockPath(hash);
    const fd = this.#files.get(path, { writable: false, create: false });
    if (fd === null) throw new CorruptionError(`Cannot read block ${hash}: it is not stored`);
    const got = readAll(fd, into, range.offset);
    if (got !== range.length) {
      throw new CorruptionError(
        `Cannot read block ${hash}: ${range.length} bytes at ${range.offset} asked, ${got} stored`,
      );
    }
    return Promise.resolve();
  }

  /**
   * Deletes a block unless it was stored (or stored again) less than `minAgeMs`
   * ago, or is still being written; true when it is gone.
   */
  deleteBlockIfOlderThan(hash: string, minAgeMs: number): boolean {
    assert(isBlockName(hash), `bad block name ${hash}`);
    if (this.#unsynced.has(hash)) return false;
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

  /** Bytes of a stored block (whole blocks cross the network in a cluster). */
  blockSize(hash: string): Promise<number> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    const path = this.#unsynced.get(hash)?.tmp ?? this.#blockPath(hash);
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
    const unsynced = this.#unsynced.get(hash)?.tmp;
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
    yield* [...this.#unsynced.keys()];
    const root = join(this.dir, "blocks");
    for (const prefix of fs.readdirSync(root).sort()) {
      for (const name of fs.readdirSync(join(root, prefix)).sort()) {
        if (isBlockName(name)) yield name;
      }
    }
  }

  readObject(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    assert(isObjectName(name), `bad object name ${name}`);
    assert(into.length === range.length);
    const fd = this.#files.get(this.#objectPath(name), { writable: true, create: false });
    const got = fd === null ? 0 : readAll(fd, into, range.offset);
    into.fill(0, got);
    return Promise.resolve();
  }

  async writeObject(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean } = {},
  ): Promise<void> {
    assert(isObjectName(name), `bad object name ${name}`);
    const path = this.#objectPath(name);
    let truncate = options.truncate ?? false;
    let fd = this.#files.get(path, { writable: true, create: false, ifCached: true });
    if (fd === null && truncate) {
      // Usually the object is new: create it exclusively, and nothing needs truncating.
      fd = this.#createObjectFile(name, path, true);
      if (fd !== null) truncate = false;
    }
    fd ??= this.#createObjectFile(name, path, false)!;
    // Truncating a large file takes time in the kernel: keep it off the event loop.
    if (truncate) await ftruncate(fd, 0);
    writeAll(fd, data, offset);
    this.#files.markDirty(path);
  }

  /** Opens an object file, creating it and its directory as needed (no failing probe first). */
  #createObjectFile(name: string, path: string, exclusive: boolean): number | null {
    const dir = join(this.dir, "objects", name.slice(0, 32));
    if (!this.#objectDirs.has(dir)) {
      fs.mkdirSync(dir, { recursive: true });
      this.#objectDirs.add(dir);
    }
    // The file may be new: its directory entry must reach disk with the next flush.
    this.#dirtyDirs.add(dir);
    return this.#files.get(path, { writable: true, create: true, exclusive });
  }

  async deleteObject(name: string): Promise<void> {
    assert(isObjectName(name), `bad object name ${name}`);
    const path = this.#objectPath(name);
    this.#files.forget(path);
    // Unlinking a large file takes time in the kernel: keep it off the event loop.
    try {
      await Deno.remove(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    this.#dirtyDirs.add(join(this.dir, "objects", name.slice(0, 32)));
  }

  /** Bytes an object spans (0 when missing): what a replica copies to repair another. */
  async objectSize(name: string): Promise<number> {
    assert(isObjectName(name), `bad object name ${name}`);
    try {
      return (await Deno.stat(this.#objectPath(name))).size;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return 0;
      throw error;
    }
  }

  async *listObjects(): AsyncIterable<string> {
    const root = join(this.dir, "objects");
    for (const uid of fs.readdirSync(root).sort()) {
      for (const rest of fs.readdirSync(join(root, uid)).sort()) {
        const name = `${uid}.${rest}`;
        if (isObjectName(name)) yield name;
      }
    }
  }

  getMeta(key: string): Promise<MetaEntry | null> {
    assert(isMetaKey(key), `bad meta key ${key}`);
    return Promise.resolve(this.#readMeta(key));
  }

  putMeta(key: string, value: Uint8Array, expectedVersion: number): Promise<number> {
    assert(isMetaKey(key), `bad meta key ${key}`);
    assert(value.length <= metaValueBytesMax, `meta value of ${value.length} bytes`);
    return this.#metaLocks.run(key, async () => {
      const version = this.#readMeta(key)?.version ?? 0;
      if (version !== expectedVersion) {
        throw new VersionMismatchError(
          `Cannot update ${key}: version is ${version}, expected ${expectedVersion}`,
        );
      }
      const header = new DataView(new ArrayBuffer(metaHeaderBytes));
      header.setUint32(0, metaMagic);
      header.setUint32(4, version + 1);
      header.setFloat64(8, value.length);
      const tmp = this.#tmpPath();
      const fd = fs.openSync(tmp, "w", 0o644);
      try {
        writeAll(fd, new Uint8Array(header.buffer), 0);
        writeAll(fd, value, metaHeaderBytes);
        await fdatasync(fd);
      } finally {
        fs.closeSync(fd);
      }
      const path = this.#metaPath(key);
      fs.mkdirSync(join(path, ".."), { recursive: true });
      fs.renameSync(tmp, path);
      await syncDir(join(path, ".."));
      return version + 1;
    });
  }

  deleteMeta(key: string, expectedVersion: number): Promise<void> {
    assert(isMetaKey(key), `bad meta key ${key}`);
    return this.#metaLocks.run(key, async () => {
      const version = this.#readMeta(key)?.version ?? 0;
      if (version !== expectedVersion) {
        throw new VersionMismatchError(
          `Cannot delete ${key}: version is ${version}, expected ${expectedVersion}`,
        );
      }
      const path = this.#metaPath(key);
      fs.rmSync(path, { force: true });
      await syncDir(join(path, ".."));
    });
  }

  listMeta(prefix: string): Promise<string[]> {
    const slash = prefix.indexOf("/");
    assert(slash > 0, `meta prefix ${prefix} names no kind`);
    const kind = prefix.slice(0, slash);
    let names: string[];
    try {
      names = fs.readdirSync(join(this.dir, "meta", kind));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return Promise.resolve([]);
      throw error;
    }
    const keys = names.map((name) => `${kind}/${name}`).filter((key) =>
      key.startsWith(prefix) && isMetaKey(key)
    );
    return Promise.resolve(keys.sort());
  }

  flush(): Promise<void> {
    return this.#flushing.run(async () => {
      await Promise.all([...this.#unsynced].map(([hash, block]) => this.#settleBlock(hash, block)));
      const dirs = [...this.#dirtyDirs];
      this.#dirtyDirs.clear();
      await this.#files.syncAll();
      await Promise.all(dirs.map(syncDir));
    });
  }

  /** Syncs an unsynced block's file, then renames it into place. */
  /**
   * Syncs new blocks in the background, a few at a time, so that the disk
   * writes while an upload is still arriving and flush() finds most of the
   * work done.
   */
  #startWriteback(block: { tmp: string; synced: Promise<void> | null }): void {
    this.#writebackQueue.push(block);
    while (this.#writebacksRunning < writebacksMax && this.#writebackQueue.length > 0) {
      const next = this.#writebackQueue.shift()!;
      this.#writebacksRunning++;
      next.synced = syncFile(next.tmp).finally(() => {
        this.#writebacksRunning--;
        if (this.#writebackQueue.length > 0) this.#startWriteback(this.#writebackQueue.shift()!);
      });
      next.synced.catch(() => {}); // flush() syncs again and reports
    }
  }

  async #settleBlock(hash: string, block: { tmp: string; synced: Promise<void> | null }) {
    // Not yet picked up by the background writeback: sync it here instead.
    const queued = this.#writebackQueue.indexOf(block);
    if (queued >= 0) this.#writebackQueue.splice(queued, 1);
    const synced = block.synced !== null && await block.synced.then(() => true, () => false);
    // Deleted while it was syncing (garbage collected): nothing to put in place.
    if (this.#unsynced.get(hash) !== block) return;
    if (!synced) await syncFile(block.tmp);
    if (this.#unsynced.get(hash) !== block) return;
    const dir = join(this.dir, "blocks", hash.slice(0, 2));
    fs.mkdirSync(dir, { recursive: true });
    fs.renameSync(block.tmp, this.#blockPath(hash));
    this.#unsynced.delete(hash);
    this.#files.forget(block.tmp);
    this.#dirtyDirs.add(dir);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    this.#files.closeAll();
    this.#lock.close();
  }

  #readMeta(key: string): MetaEntry | null {
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(this.#metaPath(key));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (
      bytes.length < metaHeaderBytes || view.getUint32(0) !== metaMagic ||
      view.getFloat64(8) !== bytes.length - metaHeaderBytes
    ) {
      throw new CorruptionError(`Cannot read metadata ${key}: the file is malformed`);
    }
    return { version: view.getUint32(4), value: bytes.subarray(metaHeaderBytes) };
  }

  #blockPath(hash: string): string {
    return join(this.dir, "blocks", hash.slice(0, 2), hash);
  }

  #objectPath(name: string): string {
    return `${this.dir}/objects/${name.slice(0, 32)}/${name.slice(33)}`;
  }

  #metaPath(key: string): string {
    return join(this.dir, "meta", key);
  }

  #tmpPath(): string {
    return join(this.dir, "tmp", `${Deno.pid}.${++this.#tmpCounter}`);
  }
}

function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) {
    done += fs.writeSync(fd, data, done, data.length - done, position + done);
  }
}

/** Reads until `into` is full or the file ends; returns the bytes read. */
function readAll(fd: number, into: Uint8Array, position: number): number {
  let done = 0;
  while (done < into.length) {
    const got = fs.readSync(fd, into, done, into.length - done, position + done);
    if (got === 0) break;
    done += got;
  }
  return done;
}

/** Background block syncs at once: enough to keep the disk busy, few enough not to thrash. */
const writebacksMax = 2;

async function syncFile(path: string): Promise<void> {
  const fd = fs.openSync(path, fs.constants.O_RDONLY);
  try {
    await fdatasync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function syncDir(dir: string): Promise<void> {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY);
  try {
    await fsync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Unlinks `path`; false when there was nothing to unlink. */
function unlinkIfPresent(path: string): boolean {
  try {
    fs.unlinkSync(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}
