/**
 * The local engine's volume objects: one sparse file an object under
 * `DIR/objects/UID/GEN.INDEX`, read and written in place through the engine's
 * descriptor cache; durable with the engine's next flush.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { assert } from "./assert.ts";
import type { ByteRange } from "./engine.ts";
import { isObjectName } from "./engine.ts";
import type { DirectWrites } from "./_direct_writes.ts";
import type { FdCache } from "./_fd_cache.ts";
import { writeAll } from "./_file_io.ts";
import { ObjectTurns } from "./_object_turns.ts";
import { diskSpace } from "./_disk_usage.ts";
import { lostWrites } from "../metrics/mod.ts";

const ftruncate = promisify(fs.ftruncate);

/**
 * Bytes of writes start() answers for before they are done; past it, it waits
 * for its own (a writer faster than the disk is held back, and the link's
 * buffers the writes hold stay within its pool: transport/_link_calls.ts).
 */
export const startedBytesMax = 16 * 1024 * 1024;

/** Free bytes below which start() writes on the spot (a full disk then refuses the change). */
export const startRoomBytesDefault = 64 * 1024 * 1024;

/** Why an object's write that was answered for failed (reads and syncs of it throw it). */
function lostError(name: string, error: unknown): Error {
  const reason = error instanceof Error ? error.message : String(error);
  return new Error(`object ${name} lost a write: ${reason}`, { cause: error });
}

/** Volume objects as files (LocalEngine's readObject, writeObject and their kin). */
export class ObjectFiles {
  readonly #dir: string;
  readonly #files: FdCache;
  /** Tells the engine a directory's entries changed: its next flush syncs it. */
  readonly #dirChanged: (dir: string) => void;
  /** Object directories known to exist. */
  #objectDirs = new Set<string>();

  /** Writes around the page cache, when the data directory takes them. */
  readonly #direct: DirectWrites | null;

  /** Each object's order of accesses (_object_turns.ts). */
  readonly #turns = new ObjectTurns();
  /**
   * Per object file, why a write start() answered for failed: its reads,
   * syncs and changes throw this until it is written whole again or deleted.
   */
  #lost = new Map<string, Error>();
  /** Free bytes below which start() writes on the spot. */
  readonly #startRoomBytes: number;
  /** Writes start() answered for and not done yet, with their bytes. */
  #started = new Set<Promise<void>>();
  #startedBytes = 0;

  /**
   * `dir`: the data directory; `files`: the engine's descriptors (its flush syncs
   * them); `direct`: its direct writes (null where the file system refuses them);
   * `startRoomBytes`: see {@linkcode startRoomBytesDefault}.
   */
  constructor(
    dir: string,
    files: FdCache,
    direct: DirectWrites | null,
    options: { dirChanged: (dir: string) => void; startRoomBytes: number },
  ) {
    this.#dir = dir;
    this.#files = files;
    this.#direct = direct;
    this.#dirChanged = options.dirChanged;
    this.#startRoomBytes = options.startRoomBytes;
  }

  /**
   * Reads `range` of object `name` into `into`; bytes never written read as
   * zeros. A large read runs on the thread pool (_fd_cache.ts) and returns the
   * bytes the object held when it was asked: a write asked after it waits.
   */
  async read(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    assert(isObjectName(name), `bad object name ${name}`);
    assert(into.length === range.length);
    const path = this.#path(name);
    await this.#turns.run(path, async () => {
      this.#checkLost(path);
      const got = await this.#files.read(path, into, range.offset, { writable: true });
      into.fill(0, got ?? 0);
    });
  }

  /**
   * Writes `data` at `offset` of object `name` (`truncate`: emptied first);
   * with `direct`, its aligned part around the page cache and off the event
   * loop (_direct_writes.ts): every access of the object asked meanwhile waits
   * for it, as for a change that waits for large reads. `"extending"`: so
   * only when the write starts at or past the object's end (or truncates it),
   * found in the write's turn, once the accesses before it are done.
   */
  async write(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; direct?: boolean | "extending" },
  ): Promise<void> {
    assert(isObjectName(name), `bad object name ${name}`);
    const truncate = options.truncate ?? false;
    const direct = options.direct ? this.#direct : null; // true, or "extending"
    if (direct !== null && direct.takes(data, offset)) {
      const extending = options.direct === "extending";
      return await this.#inTurn(name, offset, data, truncate, direct, extending);
    }
    const path = this.#path(name);
    const turn = this.#turns.change(path, this.#files.readsUnderWay(path));
    if (turn !== null) await turn;
    await this.#write(name, path, offset, data, truncate, null);
  }

  /**
   * A direct write of `name` made the object's turn now (every access asked
   * from here on waits for it); settles once it is written.
   */
  #inTurn(
    name: string,
    offset: number,
    data: Uint8Array,
    truncate: boolean,
    direct: DirectWrites,
    extending = false,
  ): Promise<void> {
    const path = this.#path(name);
    const turn = this.#turns.change(path, this.#files.readsUnderWay(path));
    const written = (async () => {
      if (turn !== null) await turn;
      await this.#write(name, path, offset, data, truncate, direct, extending);
    })();
    this.#turns.take(path, written);
    return written;
  }

  /**
   * A direct write (as write()) that resolves once it is the object's turn:
   * every access of the object asked from then on waits for it, and `written`
   * settles once its bytes are written (`data` must not change until then).
   * A write that fails rejects `written`, and the object's reads, syncs and
   * changes then throw until it is written whole (`truncate`) or deleted.
   * Where no part of it goes direct, or the disk is nearly full (#roomFor), it
   * is written on the spot (as write()); past {@linkcode startedBytesMax} of
   * writes under way, it resolves once done.
   */
  async start(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean },
  ): Promise<{ written: Promise<void> }> {
    assert(isObjectName(name), `bad object name ${name}`);
    const direct = this.#direct;
    if (direct === null || !direct.takes(data, offset) || !this.#roomFor(data.length)) {
      await this.write(name, offset, data, { ...options, direct: true });
      return { written: Promise.resolve() };
    }
    const path = this.#path(name);
    const written = this.#inTurn(name, offset, data, options.truncate ?? false, direct);
    written.catch((error) => {
      lostWrites.inc();
      // A write after a lost one fails with that one's error: it stays as it is.
      if (this.#lost.get(path) !== error) this.#lost.set(path, lostError(name, error));
    });
    this.#started.add(written);
    this.#startedBytes += data.length;
    const done = written.then(() => {}, () => {}).then(() => {
      this.#started.delete(written);
      this.#startedBytes -= data.length;
    });
    if (this.#startedBytes > startedBytesMax) await done;
    return { written };
  }

  /**
   * True when the disk has room for `bytes` more beyond the writes under way
   * and `startRoomBytes` (the engine's option): a disk that fills up fails the
   * write where it can still be refused (on the spot), not after its answer.
   */
  #roomFor(bytes: number): boolean {
    return diskSpace(this.#dir).freeBytes >= this.#startRoomBytes + this.#startedBytes + bytes;
  }

  /**
   * Waits for the writes start() answered for; throws while an object is lost
   * (a replica's checkpoint, which flushes before it saves the stamps it
   * copied, must not save the stamp of a change whose bytes never landed).
   */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#started);
    const [lost] = this.#lost.values();
    if (lost !== undefined) throw lost;
  }

  async #write(
    name: string,
    path: string,
    offset: number,
    data: Uint8Array,
    truncate: boolean,
    direct: DirectWrites | null,
    extending = false,
  ): Promise<void> {
    if (truncate) this.#lost.delete(path);
    else this.#checkLost(path);
    let fd = this.#files.get(path, { writable: true, create: false, ifCached: true });
    if (fd === null && truncate) {
      // Usually the object is new: create it exclusively, and nothing needs truncating.
      fd = this.#create(name, path, true);
      if (fd !== null) truncate = false;
    }
    fd ??= this.#create(name, path, false)!;
    // Truncating a large file takes time in the kernel: keep it off the event loop.
    if (truncate) await ftruncate(fd, 0);
    // An overwrite of bytes the object holds stays in the page cache (write()).
    else if (extending && fs.fstatSync(fd).size > offset) direct = null;
    const wrote = direct === null ? 0 : await direct.writePrefixAsync(path, data, offset, "object");
    if (wrote < data.length) {
      // The cache may have closed the descriptor (and the number gone to another file)
      // while the calls above waited: take it again.
      fd = this.#files.get(path, { writable: true, create: false })!;
      writeAll(fd, data.subarray(wrote), offset + wrote);
    }
    this.#files.markDirty(path);
  }

  /** Deletes object `name` (nothing when missing). */
  async delete(name: string): Promise<void> {
    assert(isObjectName(name), `bad object name ${name}`);
    const path = this.#path(name);
    const turn = this.#turns.change(path, this.#files.readsUnderWay(path));
    if (turn !== null) await turn;
    this.#files.forget(path);
    this.#lost.delete(path);
    // Unlinking a large file takes time in the kernel: keep it off the event loop.
    try {
      await Deno.remove(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    this.#dirChanged(join(this.#dir, "objects", name.slice(0, 32)));
  }

  /** Bytes object `name` spans (0 when missing). */
  size(name: string): Promise<number> {
    assert(isObjectName(name), `bad object name ${name}`);
    const path = this.#path(name);
    return this.#turns.run(path, () => {
      try {
        this.#checkLost(path);
        return Promise.resolve(fs.statSync(path).size);
      } catch (error) {
        if ((error as { code?: string }).code === "ENOENT") return Promise.resolve(0);
        return Promise.reject(error);
      }
    });
  }

  /** Every object, by name. */
  async *list(): AsyncIterable<string> {
    const root = join(this.#dir, "objects");
    for (const uid of fs.readdirSync(root).sort()) {
      for (const rest of fs.readdirSync(join(root, uid)).sort()) {
        const name = `${uid}.${rest}`;
        if (isObjectName(name)) yield name;
      }
    }
  }

  /** Opens an object file, creating it and its directory as needed (no failing probe first). */
  #create(name: string, path: string, exclusive: boolean): number | null {
    const dir = join(this.#dir, "objects", name.slice(0, 32));
    if (!this.#objectDirs.has(dir)) {
      fs.mkdirSync(dir, { recursive: true });
      this.#objectDirs.add(dir);
    }
    // The file may be new: its directory entry must reach disk with the next flush.
    this.#dirChanged(dir);
    return this.#files.get(path, { writable: true, create: true, exclusive });
  }

  /**
   * Makes the writes of the named objects durable (their files; directories
   * are the caller's), once those start() answered for are done.
   */
  async sync(names: string[]): Promise<void> {
    const paths = names.map((name) => this.#path(name));
    await Promise.all(paths.map((path) => this.#turns.of(path)));
    paths.forEach((path) => this.#checkLost(path));
    await this.#files.sync(paths);
  }

  /** Throws why a write start() answered for failed, if one of `path` did. */
  #checkLost(path: string): void {
    const lost = this.#lost.get(path);
    if (lost !== undefined) throw lost;
  }

  #path(name: string): string {
    return `${this.#dir}/objects/${name.slice(0, 32)}/${name.slice(33)}`;
  }
}
