/**
 * The local engine's content blocks: one file each under
 * `DIR/blocks/ab/abcd…`, written once to a temporary file (its bytes around
 * the page cache: _direct_writes.ts), synced by the engine's flush and only
 * then renamed into place, so that a block visible after a crash is whole.
 * Blocks between their write and that flush are _pending_blocks.ts's.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { assert } from "./assert.ts";
import type { ByteRange } from "./engine.ts";
import { isBlockName } from "./engine.ts";
import { CorruptionError } from "./errors.ts";
import type { DirectWrites } from "./_direct_writes.ts";
import type { FdCache } from "./_fd_cache.ts";
import { unlinkIfPresent, writeAll } from "./_file_io.ts";
import { PendingBlocks } from "./_pending_blocks.ts";

/** Content blocks as files (LocalEngine's putBlock, readBlock and their kin). */
export class BlockFiles {
  readonly #dir: string;
  readonly #files: FdCache;
  readonly #direct: DirectWrites | null;
  /** Tells the engine a directory's entries changed: its next flush syncs it. */
  readonly #dirChanged: (dir: string) => void;
  /** A new temporary file's path. */
  readonly #tmpPath: () => string;
  /** Blocks put since the last flush: their temporary file and its sync, once started. */
  #unsynced = new PendingBlocks();

  /**
   * `dir`: the data directory; `files`: the engine's descriptors; `direct`:
   * its direct writes (null where the file system refuses them).
   */
  constructor(
    dir: string,
    files: FdCache,
    direct: DirectWrites | null,
    options: { dirChanged: (dir: string) => void; tmpPath: () => string },
  ) {
    this.#dir = dir;
    this.#files = files;
    this.#direct = direct;
    this.#dirChanged = options.dirChanged;
    this.#tmpPath = options.tmpPath;
  }

  has(hash: string): Promise<boolean> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    return Promise.resolve(this.#unsynced.has(hash) || fs.existsSync(this.#path(hash)));
  }

  /**
   * Writes the block to a temporary file. flush() syncs it and only then renames
   * it into place, so a block visible after a crash is always whole, and an
   * upload pays for one sync pass at its end rather than one per block. The
   * write runs off the event loop (_direct_writes.ts); a put of a block being
   * written waits for it (and writes it itself if that write failed).
   */
  put(hash: string, data: Uint8Array): Promise<boolean> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    if (this.#unsynced.has(hash)) return Promise.resolve(false);
    const writing = this.#unsynced.writing(hash);
    if (writing !== undefined) return writing.then(() => false, () => this.put(hash, data));
    if (fs.existsSync(this.#path(hash))) {
      // Stored again (deduplicated): it is young again, so a cluster's garbage
      // collection, which spares young blocks, cannot take it from under this put.
      const now = new Date();
      try {
        fs.utimesSync(this.#path(hash), now, now);
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
  async read(hash: string, range: ByteRange, into: Uint8Array): Promise<void> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    assert(into.length === range.length);
    const path = this.#unsynced.tmpOf(hash) ?? this.#path(hash);
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
  deleteIfOlderThan(hash: string, minAgeMs: number): boolean {
    assert(isBlockName(hash), `bad block name ${hash}`);
    if (this.#unsynced.has(hash) || this.#unsynced.writing(hash) !== undefined) return false;
    const path = this.#path(hash);
    let modified: number;
    try {
      modified = fs.statSync(path).mtimeMs;
    } catch {
      return true; // not here
    }
    if (Date.now() - modified < minAgeMs) return false;
    this.#files.forget(path);
    if (unlinkIfPresent(path)) this.#dirChanged(join(this.#dir, "blocks", hash.slice(0, 2)));
    return true;
  }

  /** Bytes of a stored block (whole blocks cross the network in a cluster). */
  size(hash: string): Promise<number> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    const path = this.#unsynced.tmpOf(hash) ?? this.#path(hash);
    try {
      return Promise.resolve(fs.statSync(path).size);
    } catch (error) {
      if ((error as { code?: string }).code === "ENOENT") {
        throw new CorruptionError(`Cannot size block ${hash}: it is not stored`);
      }
      throw error;
    }
  }

  delete(hash: string): Promise<void> {
    assert(isBlockName(hash), `bad block name ${hash}`);
    const unsynced = this.#unsynced.tmpOf(hash);
    if (unsynced !== undefined) {
      this.#unsynced.delete(hash);
      this.#files.forget(unsynced);
      fs.rmSync(unsynced, { force: true });
      return Promise.resolve();
    }
    const path = this.#path(hash);
    this.#files.forget(path);
    if (unlinkIfPresent(path)) this.#dirChanged(join(this.#dir, "blocks", hash.slice(0, 2)));
    return Promise.resolve();
  }

  async *list(): AsyncIterable<string> {
    yield* this.#unsynced.hashes();
    const root = join(this.#dir, "blocks");
    for (const prefix of fs.readdirSync(root).sort()) {
      for (const name of fs.readdirSync(join(root, prefix)).sort()) {
        if (isBlockName(name)) yield name;
      }
    }
  }

  /** Waits for the blocks being written to their temporary files. */
  settleWrites(): Promise<void> {
    return this.#unsynced.settleWrites();
  }

  /** Syncs every block put since the last call and renames it into place (the engine's flush). */
  settleAll(): Promise<void> {
    return this.#unsynced.settleAll((hash, tmp) => this.#place(hash, tmp));
  }

  /** Renames a synced block's temporary file into place. */
  #place(hash: string, tmp: string): void {
    const dir = join(this.#dir, "blocks", hash.slice(0, 2));
    fs.mkdirSync(dir, { recursive: true });
    fs.renameSync(tmp, this.#path(hash));
    this.#files.forget(tmp);
    this.#dirChanged(dir);
  }

  #path(hash: string): string {
    return join(this.#dir, "blocks", hash.slice(0, 2), hash);
  }
}
