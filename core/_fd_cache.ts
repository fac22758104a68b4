/**
 * A bounded cache of open file descriptors for positioned reads and writes.
 *
 * Writes use `node:fs` writeSync: one pwrite64 on the calling thread (~10
 * µs), where Deno's async FileHandle costs ~45 µs of CPU per call (see
 * PERFORMANCE-NOTES.md). Reads under {@linkcode asyncReadBytesMin} take what
 * the page cache holds on the calling thread (`readCached`, a `preadv2` that
 * never waits for the disk) and finish off it when some bytes are only on the
 * disk (a stall of the event loop per read, where a disk serves many reads at
 * once: decisions.md, "Small reads of cold pages off the event loop"), and
 * once a file's small reads found cold pages {@linkcode coldReadsBeforeReadAhead}
 * times, ask the kernel to read the whole {@linkcode readAheadBytes} around
 * them in the background (decisions.md, "Reading ahead of cold copies");
 * without libc, a `readSync`. Larger reads run on the runtime's thread pool
 * (`read()`): their copy out of the page cache is most of what a 1 MiB read
 * costs, and the event loop was the bound of sequential reads (decisions.md,
 * "Large reads off the event loop"). Deno's `fs.read` holds the file from the
 * call on: a descriptor closed (evicted, forgotten) while such a read runs
 * neither fails it nor lends its number to another file under it
 * (large_reads_test.ts checks it). A writer can wait for the reads of a file
 * under way (`readsUnderWay()`), so that a read still returns the bytes the
 * file held when it was asked. Descriptors written since the last sync are
 * remembered so that `syncAll()` can make them durable.
 */
import * as fs from "node:fs";
import { promisify } from "node:util";
import { coldReads, readAheads } from "../metrics/mod.ts";
import { readAhead, readAll, readAllAsync, readCached } from "./_file_io.ts";

const fdatasync = promisify(fs.fdatasync);

/** Reads of at least this many bytes leave the event loop (the copy outweighs the hand-off). */
export const asyncReadBytesMin = 128 * 1024;

/**
 * Small reads of one open file that find cold pages before the kernel is asked
 * to read the whole window around the last of them. Each such read costs a
 * disk read of the 128 KiB around it anyway (Linux's readahead of a random
 * read, which `RWF_NOWAIT` starts too), so a file read at random this often is
 * read whole for at most four times what those reads cost: random reads of a
 * large cold volume stay near the disk's random reads, and a copy being read
 * all over warms up a window at a time instead of 128 KiB at a time.
 */
export const coldReadsBeforeReadAhead = 8;
/** The aligned window read ahead: an object or a block (4 MiB). */
export const readAheadBytes = 4 * 1024 * 1024;

interface Entry {
  fd: number;
  writable: boolean;
  /** Small reads that found cold pages since the last read ahead. */
  coldReads: number;
  /** The window last read ahead; -1: none. */
  readAhead: number;
}

/** Least-recently-used cache of descriptors, keyed by path. */
export class FdCache {
  #entries = new Map<string, Entry>();
  #dirty = new Set<string>();
  #capacity: number;
  /** Reads on the thread pool under way, by path. */
  #reading = new Map<string, Set<Promise<number>>>();
  #readsFromDisk = 0;

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
    return this.#entry(path, options)?.fd ?? null;
  }

  /**
   * Reads from `position` of `path` until `into` is full or the file ends:
   * the bytes read, or null when there is no such file. `writable`: the
   * descriptor is opened for writes too (the file's writer reuses it).
   */
  read(
    path: string,
    into: Uint8Array,
    position: number,
    options: { writable: boolean },
  ): Promise<number | null> {
    const entry = this.#entry(path, { writable: options.writable, create: false });
    if (entry === null) return Promise.resolve(null);
    let read: Promise<number>;
    if (into.length < asyncReadBytesMin) {
      // What the page cache holds, on the event loop; the rest, waiting for the disk, off it.
      let cached: { bytes: number; whole: boolean } | null;
      try {
        cached = readCached(entry.fd, into, position);
        if (cached === null) return Promise.resolve(readAll(entry.fd, into, position));
      } catch (error) {
        return Promise.reject(error);
      }
      if (cached.whole) return Promise.resolve(cached.bytes);
      const { bytes } = cached;
      this.#readsFromDisk++;
      coldReads.inc();
      this.#coldRead(entry, position + bytes);
      read = readAllAsync(entry.fd, into.subarray(bytes), position + bytes).then((n) => bytes + n);
    } else read = readAllAsync(entry.fd, into, position);
    let reads = this.#reading.get(path);
    if (reads === undefined) this.#reading.set(path, reads = new Set());
    reads.add(read);
    const done = () => {
      reads.delete(read);
      if (reads.size === 0 && this.#reading.get(path) === reads) this.#reading.delete(path);
    };
    read.then(done, done);
    return read;
  }

  /** Small reads that found part of their bytes outside the page cache (finished off the event loop). */
  get readsFromDisk(): number {
    return this.#readsFromDisk;
  }

  /** Settles once the reads of `path` on the thread pool asked so far end; null when none is. */
  readsUnderWay(path: string): Promise<unknown> | null {
    const reads = this.#reading.get(path);
    return reads === undefined ? null : Promise.allSettled([...reads]);
  }

  #entry(
    path: string,
    options: { writable: boolean; create: boolean; ifCached?: boolean; exclusive?: boolean },
  ): Entry | null {
    const cached = this.#entries.get(path);
    if (cached !== undefined && (cached.writable || !options.writable)) {
      this.#entries.delete(path);
      this.#entries.set(path, cached);
      return cached;
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
    const entry = { fd, writable: options.writable, coldReads: 0, readAhead: -1 };
    this.#entries.set(path, entry);
    this.#evict();
    return entry;
  }

  /** Counts a small read of cold pages at `position`; reads the window ahead when due. */
  #coldRead(entry: Entry, position: number): void {
    const window = position - position % readAheadBytes;
    if (window === entry.readAhead) return; // read ahead already (a read racing it)
    if (++entry.coldReads < coldReadsBeforeReadAhead) return;
    entry.coldReads = 0;
    entry.readAhead = window;
    readAheads.inc();
    readAhead(entry.fd, window, readAheadBytes);
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
