/**
 * Goal: a small read takes from the page cache what it holds on the event
 * loop and reads the rest off it, and returns the file's bytes either way
 * (also across the end of the file and after a change). Method: a real file
 * whose pages are dropped from the page cache (`fdatasync`, then
 * `posix_fadvise(DONTNEED)` through libc), read through FdCache; its count
 * of reads that went to the disk tells which way each read went.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { FdCache } from "./_fd_cache.ts";

const adviseDontNeed = 4; // POSIX_FADV_DONTNEED
const libc = Deno.dlopen("libc.so.6", {
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
});

/** Drops every page of `path` from the page cache (they are clean once synced). */
function evict(path: string): void {
  const fd = fs.openSync(path, "r+");
  try {
    fs.fdatasyncSync(fd);
    assert.equal(libc.symbols.posix_fadvise(fd, 0n, 0n, adviseDontNeed), 0);
  } finally {
    fs.closeSync(fd);
  }
}

const pattern = (length: number) => Uint8Array.from({ length }, (_, i) => (i * 11 + 3) & 0xff);

Deno.test("a small read of pages the page cache lacks reads them off the event loop", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-cold-" });
  const path = `${dir}/object`;
  const bytes = pattern(1024 * 1024 + 1000);
  await Deno.writeFile(path, bytes);
  const files = new FdCache(4);
  const read = async (position: number, length: number) => {
    const into = new Uint8Array(length);
    const got = await files.read(path, into, position, { writable: true });
    return into.subarray(0, got ?? 0);
  };
  try {
    evict(path);
    assert.deepEqual(await read(8192, 4096), bytes.subarray(8192, 12288));
    assert.equal(files.readsFromDisk, 1, "a cold page: read off the event loop");
    assert.deepEqual(await read(8192, 4096), bytes.subarray(8192, 12288));
    assert.equal(files.readsFromDisk, 1, "the same page, cached now: on the event loop");

    // Cached up to a point (a page just written), cold after it: the first part here, the rest there.
    evict(path);
    const written = pattern(4096).reverse();
    const fd = fs.openSync(path, "r+");
    fs.writeSync(fd, written, 0, 4096, 65536);
    fs.closeSync(fd);
    bytes.set(written, 65536);
    const before = files.readsFromDisk;
    const across = await read(65536, 100 * 1024);
    assert.deepEqual(across, bytes.subarray(65536, 65536 + 100 * 1024));
    assert.equal(files.readsFromDisk, before + 1);

    // Past the end of a cold file: the bytes there are, no more.
    evict(path);
    const tail = await read(bytes.length - 500, 4096);
    assert.deepEqual(tail, bytes.subarray(bytes.length - 500));

    // A change lands in the page cache: the next read sees it without the disk.
    const writer = fs.openSync(path, "r+");
    fs.writeSync(writer, new Uint8Array(4096).fill(7), 0, 4096, 200_000);
    fs.closeSync(writer);
    const count = files.readsFromDisk;
    assert.deepEqual(await read(200_000, 4096), new Uint8Array(4096).fill(7));
    assert.equal(files.readsFromDisk, count);
  } finally {
    files.closeAll();
    await Deno.remove(dir, { recursive: true });
  }
});
