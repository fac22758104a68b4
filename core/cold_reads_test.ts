/**
 * Goal: a small read takes from the page cache what it holds on the event
 * loop and reads the rest off it, and returns the file's bytes either way
 * (also across the end of the file and after a change), and once a file's
 * reads found cold pages often enough, has the kernel read the whole window
 * around them (and nothing past it). Method: a real file
 * whose pages are dropped from the page cache (`fdatasync`, then
 * `posix_fadvise(DONTNEED)` through libc), read through FdCache; its count
 * of reads that went to the disk tells which way each read went; which pages
 * the page cache holds, `mincore` of a mapping of the file (which reads none).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { coldReadsBeforeReadAhead, FdCache, readAheadBytes } from "./_fd_cache.ts";
import { coldReads, readAheads } from "../metrics/mod.ts";

/** The value of a counter without labels. */
async function counted(counter: typeof coldReads): Promise<number> {
  return (await counter.get()).values[0]?.value ?? 0;
}

const adviseDontNeed = 4; // POSIX_FADV_DONTNEED
const libc = Deno.dlopen("libc.so.6", {
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  mincore: { parameters: ["pointer", "usize", "buffer"], result: "i32" },
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

/** How many of the pages of `length` bytes at `position` of `path` the page cache holds. */
function resident(path: string, position: number, length: number): number {
  const fd = fs.openSync(path, "r");
  const [protRead, mapShared] = [1, 1];
  const map = libc.symbols.mmap(null, BigInt(length), protRead, mapShared, fd, BigInt(position));
  fs.closeSync(fd);
  assert.notEqual(Deno.UnsafePointer.value(map), -1n, "mmap");
  try {
    const pages = new Uint8Array(Math.ceil(length / 4096));
    assert.equal(libc.symbols.mincore(map, BigInt(length), pages), 0, "mincore");
    return pages.filter((page) => (page & 1) === 1).length;
  } finally {
    libc.symbols.munmap(map, BigInt(length));
  }
}

Deno.test("a file read at random from the disk often enough is read ahead, one window", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-cold-" });
  const path = `${dir}/object`;
  const bytes = pattern(2 * readAheadBytes);
  await Deno.writeFile(path, bytes);
  const files = new FdCache(4);
  const window = readAheadBytes; // the second window
  const windowPages = readAheadBytes / 4096;
  const read = async (position: number) => {
    const into = new Uint8Array(4096);
    await files.read(path, into, position, { writable: false });
    assert.deepEqual(into, bytes.subarray(position, position + 4096));
  };
  const [coldBefore, aheadBefore] = [await counted(coldReads), await counted(readAheads)];
  try {
    evict(path);
    assert.equal(resident(path, 0, bytes.length), 0);
    // Cold reads 256 KiB apart: each brings what the kernel reads around it, no more.
    for (let i = 0; i < coldReadsBeforeReadAhead - 1; i++) await read(window + i * 262_144 + 8192);
    assert.equal(files.readsFromDisk, coldReadsBeforeReadAhead - 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const before = resident(path, window, readAheadBytes);
    assert.ok(before < windowPages / 2, `${before} pages of ${windowPages} before the read ahead`);
    // One more: the whole window, in the background.
    await read(window + 3 * 1024 * 1024 + 8192);
    assert.equal(files.readsFromDisk, coldReadsBeforeReadAhead);
    // What an operator sees (docs/operations.md, "Data disk").
    assert.equal(await counted(coldReads) - coldBefore, coldReadsBeforeReadAhead);
    assert.equal(await counted(readAheads) - aheadBefore, 1);
    const deadline = Date.now() + 5_000;
    while (resident(path, window, readAheadBytes) < windowPages && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(resident(path, window, readAheadBytes), windowPages, "the window is cached");
    assert.equal(resident(path, 0, readAheadBytes), 0, "the window before it is not read");
    const count = files.readsFromDisk;
    await read(window + 2 * 1024 * 1024 + 300 * 4096);
    assert.equal(files.readsFromDisk, count, "a page of the window: from the page cache");
  } finally {
    files.closeAll();
    await Deno.remove(dir, { recursive: true });
  }
});
