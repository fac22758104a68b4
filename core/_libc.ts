/**
 * The file calls Deno lacks. A positioned write that runs off the event loop:
 * `node:fs`'s `write` with a callback is a `pwrite64` on the main thread in
 * Deno 2.9.6 (decisions.md, "Large reads off the event loop"), and
 * `Deno.FsFile` cannot open a file `O_DIRECT`; libc's `pwrite` through
 * `Deno.dlopen` with `nonblocking` runs on a worker thread and returns a
 * Promise (as the RADOS engine calls librados). The buffer handed to it must
 * stay alive and untouched until the Promise settles. And a read of what the
 * page cache holds, never waiting for the disk (`preadv2` with `RWF_NOWAIT`,
 * on the calling thread), with `errno` to tell why it read less; and
 * `posix_fadvise` (the read ahead of a file read at random from the disk,
 * started off the event loop: _fd_cache.ts).
 * Loaded on first use; null where libc cannot be opened (callers then do as
 * before: write on the event loop, read waiting for the disk).
 */
const symbols = {
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
  preadv2: { parameters: ["i32", "pointer", "i32", "i64", "i32"], result: "i64" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32", nonblocking: true },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

let loaded: Libc | null | undefined;

/** libc's calls above; null when it cannot be loaded. */
export function libc(): Libc | null {
  if (loaded !== undefined) return loaded;
  try {
    loaded = Deno.dlopen("libc.so.6", symbols).symbols;
  } catch {
    loaded = null;
  }
  return loaded;
}
