/** Whole positioned reads and writes, and the syncs and unlinks of the local engine's files. */
import * as fs from "node:fs";
import { promisify } from "node:util";
import { libc } from "./_libc.ts";
import { addressOf } from "./buffer_pool.ts";

const fdatasync = promisify(fs.fdatasync);
const fsync = promisify(fs.fsync);

/**
 * The most one buffered write hands the kernel at once. The page cache sizes
 * the folios a write creates by the write's length (Linux 6.x, large folios on
 * ext4): a 4 MiB object filled by 1 MiB writes lands in folios of up to 1 MiB,
 * and every later 4 KiB write into one walks all its buffer heads, 42-73 µs
 * against 5-8 µs in folios of 64 KiB or less (decisions.md, "Buffered writes
 * in pieces of 64 KiB").
 */
export const bufferedWriteBytesMax = 64 * 1024;

/** Writes all of `data` at `position`, at most {@linkcode bufferedWriteBytesMax} a call. */
export function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) {
    const piece = Math.min(data.length - done, bufferedWriteBytesMax);
    done += fs.writeSync(fd, data, done, piece, position + done);
  }
}

/** `preadv2` reads only what the page cache holds (Linux's `RWF_NOWAIT`). */
const rwfNoWait = 8;
/** Errnos of a kernel or file system that refuses `RWF_NOWAIT` (EINVAL, EOPNOTSUPP). */
const noWaitRefused = new Set([22, 95]);
/** The one `struct iovec` of readCached (calls on the event loop take turns), and its address. */
const iovec = new BigUint64Array(2);
let iovecPointer: Deno.PointerValue = null;
/** False once the kernel refused `RWF_NOWAIT` (then small reads wait for the disk as before). */
let noWaitWorks = true;

/**
 * Reads what the page cache holds of `into.length` bytes at `position`,
 * without waiting for the disk: `bytes` read, and `whole` when that is all
 * there is to read (`into` full, or the file ends there). A read that is not
 * whole is to be finished off the event loop, where waiting for the disk
 * stalls nothing else (a replica's copies, written around the page cache, are
 * read from the disk at first: a lease holder after a migration, a reader of
 * another node's volume). Null where this cannot be done (no libc, or a file
 * system that refuses `RWF_NOWAIT`): read as before.
 */
export function readCached(
  fd: number,
  into: Uint8Array,
  position: number,
): { bytes: number; whole: boolean } | null {
  const calls = noWaitWorks ? libc() : null;
  const start = calls === null ? null : addressOf(into);
  if (calls === null || start === null) return null;
  iovecPointer ??= Deno.UnsafePointer.of(iovec);
  let done = 0;
  while (done < into.length) {
    iovec[0] = start + BigInt(done);
    iovec[1] = BigInt(into.length - done);
    const got = Number(calls.preadv2(fd, iovecPointer, 1, BigInt(position + done), rwfNoWait));
    if (got === 0) return { bytes: done, whole: true }; // the end of the file
    if (got > 0) {
      done += got;
      continue;
    }
    const errno = new Deno.UnsafePointerView(calls.__errno_location()!).getInt32();
    // EAGAIN: not all cached. Refused: never asked again. Another error: the read off the
    // loop meets it and reports it.
    if (noWaitRefused.has(errno)) noWaitWorks = false;
    return { bytes: done, whole: false };
  }
  return { bytes: done, whole: true };
}

const adviseWillNeed = 3; // POSIX_FADV_WILLNEED

/**
 * Asks the kernel to read `length` bytes at `position` of `fd` into the page
 * cache in the background (`posix_fadvise(WILLNEED)`, itself called off the
 * event loop: it queues the reads and returns). Only advice: nothing waits for
 * it, a failure is ignored, and should `fd` be closed and its number reused
 * meanwhile, another file's pages are read early, nothing more. Nothing where
 * libc cannot be loaded.
 */
export function readAhead(fd: number, position: number, length: number): void {
  libc()?.posix_fadvise(fd, BigInt(position), BigInt(length), adviseWillNeed).catch(() => {});
}

/** Reads until `into` is full or the file ends; returns the bytes read. */
export function readAll(fd: number, into: Uint8Array, position: number): number {
  let done = 0;
  while (done < into.length) {
    const got = fs.readSync(fd, into, done, into.length - done, position + done);
    if (got === 0) break;
    done += got;
  }
  return done;
}

/**
 * {@linkcode readAll} on the runtime's thread pool: the copy out of the page
 * cache leaves the event loop, for a thread hand-off each way (about 25 µs of
 * the event loop's time, against 10 µs and the copy for a `readSync`; a MiB's
 * copy is about 120 µs here). The caller keeps `fd` open until it settles.
 */
export function readAllAsync(fd: number, into: Uint8Array, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const next = (done: number) => {
      fs.read(fd, into, done, into.length - done, position + done, (error, got) => {
        if (error !== null) reject(error);
        else if (got === 0 || done + got === into.length) resolve(done + got);
        else next(done + got);
      });
    };
    next(0);
  });
}

/** Makes the bytes of the file at `path` durable. */
export function syncFile(path: string): Promise<void> {
  return syncOpened(path, fdatasync);
}

/** Makes the entries of directory `dir` (creations, renames, unlinks) durable. */
export function syncDir(dir: string): Promise<void> {
  return syncOpened(dir, fsync);
}

/** {@linkcode syncDir}, blocking (for constructors that open a directory's files). */
export function syncDirSync(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Opens `path` read-only for `sync`, and closes it again. */
async function syncOpened(path: string, sync: (fd: number) => Promise<void>): Promise<void> {
  const fd = fs.openSync(path, fs.constants.O_RDONLY);
  try {
    await sync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Unlinks `path`; false when there was nothing to unlink. */
export function unlinkIfPresent(path: string): boolean {
  try {
    fs.unlinkSync(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}
