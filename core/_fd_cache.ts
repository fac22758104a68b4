/**
 * A bounded cache of open file descriptors for positioned reads and writes.
 *
 * Reads and writes use `node:fs` readSync/writeSync: one pread64/pwrite64 on the
 * calling thread (~10 µs), where Deno's async FileHandle costs ~45 µs of CPU per
 * call (see PERFORMANCE-NOTES.md). Descriptors written since the last sync are
 * remembered so that `syncAll()` can make them durable.
 */
import * as fs from "node:fs";
import { promisify } from "node:util";

const fdatasync = promisify(fs.fdatasync);

interface Entry {
  fd: number;
  writable: boolean;
}

/** Least-recently-used cache of descriptors, keyed by path. */
export class FdCache {
  #entries = new Map<string, Entry>();
  #dirty = new Set<string>();
  #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /**
   * An open descriptor for `path`, or null when the file does not exist and
   * `create` is false (or, with `ifCached`, when it is not already open; or,
   * with `exclusive`, when it exists already).
   */
  get(
    path: string,
    options: { writable: boolean; create: boolean; ifCached?: boolean; exclusive?: boolean },
  ): number | null {
    const cached = this.#entries.get(path);
    if (cached !== undefined && (cached.writable || !options.writable)) {
      this.#entries.delete(path);
      this.#entries.set(path, cached);
      return cached.fd;
    }
    if (options.ifCached) return null;
    if (cached !== undefined) this.#close(path, cached);
    let flags = options.writable ? fs.constants.O_RDWR : fs.constants.O_RDONLY;
    if (options.create) flags |= fs.constants.O_CREAT;
    if (options.exclusive) flags |= fs.constants.O_EXCL;
    let fd: number;
    try {
      fd = fs.openSync(path, flags, 0o644);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (!options.create && code === "ENOENT") return null;
      if (options.exclusive && code === "EEXIST") return null;
      throw error;
    }
    this.#entries.set(path, { fd, writable: options.writable });
    this.#evict();
    return fd;
  }

  /** Records that `path` was written and must be synced by the next syncAll(). */
  markDirty(path: string): void {
    this.#dirty.add(path);
  }

  /** Closes the descriptor of `path` if open (before unlinking it). */
  forget(path: string): void {
    const entry = this.#entries.get(path);
    if (entry !== undefined) this.#close(path, entry);
    this.#dirty.delete(path);
  }

  /** fdatasync()s every descriptor written since the last call, concurrently. */
  syncAll(): Promise<void> {
    return this.sync([...this.#dirty]);
  }

  /** fdatasync()s those of `paths` written since their last sync, concurrently. */
  async sync(paths: string[]): Promise<void> {
    paths = paths.filter((path) => this.#dirty.delete(path));
    await Promise.all(paths.map(async (path) => {
      const entry = this.#entries.get(path);
      if (entry !== undefined) return await fdatasync(entry.fd);
      // Evicted since it was written: a fresh descriptor syncs the same inode.
      const fd = fs.openSync(path, fs.constants.O_RDONLY);
      try {
        await fdatasync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }));
  }

  /** Closes every descriptor (dirty ones must have been synced by the caller). */
  closeAll(): void {
    for (const [path, entry] of this.#entries) this.#close(path, entry);
  }

  #evict(): void {
    while (this.#entries.size > this.#capacity) {
      const [path, entry] = this.#entries.entries().next().value!;
      this.#close(path, entry);
    }
  }

  #close(path: string, entry: Entry): void {
    this.#entries.delete(path);
    fs.closeSync(entry.fd);
  }
}
