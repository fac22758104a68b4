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

/**
 * Drops every page of `path` from the page cache, and checks that it did. The
 * kernel leaves a page it finds busy where it is, and a page its readahead is
 * still reading (one a test's earlier read started) is neither dropped nor seen
 * by `mincore` until it is read, then cached: so the whole file is read first
 * (which waits for every such page), synced, and advised away until none stays.
 */
function evict(path: string): void {
  const size = fs.statSync(path).size;
  let cached = 0;
  for (let attempt = 0; attempt < 50; attempt++) {
    const fd = fs.openSync(path, "r+");
    try {
      fs.readFileSync(fd);
      fs.fdatasyncSync(fd);
      assert.equal(libc.symbols.posix_fadvise(fd, 0n, 0n, adviseDontNeed), 0);
    } finally {
      fs.closeSync(fd);
    }
    cached = resident(path, 0, size);
    if (cached === 0) return;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  assert.fail(`${cached} pages of ${path} stay in the page cache after 50 evictions`);
}

const pattern = (length: number) => Uint8Array.from({ length }, (_, i) => (i * 11 + 3) & 0xff);

/**
 * Reads through `read` pages that `makeCold` took out of the page cache, until
 * the read went to the disk once, at most 5 times. Where the disk answers fast
 * enough, the readahead `RWF_NOWAIT` starts is done before that call looks
 * again and the read finishes on the event loop, as a cached one would: a read
 * that did so is tried again; five in a row mean none went to the disk.
 */
async function readCold(files: FdCache, makeCold: () => void, read: () => Promise<void>) {
  for (let attempt = 1; attempt <= 5; attempt++) {
    makeCold();
    const before = files.readsFromDisk;
    await read();
    if (files.readsFromDisk === before + 1) return;
    assert.equal(files.readsFromDisk, before, "one read, at most one count");
  }
  assert.fail("five reads of pages taken from the page cache found them cached");
}

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
    await readCold(files, () => evict(path), async () => {
      assert.deepEqual(await read(8192, 4096), bytes.subarray(8192, 12288));
    });
    const count = files.readsFromDisk;
    assert.deepEqual(await read(8192, 4096), bytes.subarray(8192, 12288));
    assert.equal(files.readsFromDisk, count, "the same page, cached now: on the event loop");

    // Cached up to a point (a page just written), cold after it: the first part here, the rest there.
    const written = pattern(4096).reverse();
    bytes.set(written, 65536);
    const writeOne = () => {
      evict(path);
      const fd = fs.openSync(path, "r+");
      fs.writeSync(fd, written, 0, 4096, 65536);
      fs.closeSync(fd);
    };
    await readCold(files, writeOne, async () => {
      const across = await read(65536, 100 * 1024);
      assert.deepEqual(across, bytes.subarray(65536, 65536 + 100 * 1024));
    });

    // Past the end of a cold file: the bytes there are, no more.
    evict(path);
    const tail = await read(bytes.length - 500, 4096);
    assert.deepEqual(tail, bytes.subarray(bytes.length - 500));

    // A change lands in the page cache: the next read sees it without the disk.
    const writer = fs.openSync(path, "r+");
    fs.writeSync(writer, new Uint8Array(4096).fill(7), 0, 4096, 200_000);
    fs.closeSync(writer);
    const settled = files.readsFromDisk;
    assert.deepEqual(await read(200_000, 4096), new Uint8Array(4096).fill(7));
    assert.equal(files.readsFromDisk, settled);
  } finally {
    files.closeAll();
    await Deno.remove(dir, { recursive: true });
  }
});

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
    // Cold reads 256 KiB apart, each of a file the page cache holds nothing of (the kernel's own
    // readahead, up to `read_ahead_kb` and its own choice, could otherwise have cached the next).
    for (let i = 0; i < coldReadsBeforeReadAhead - 1; i++) {
      await readCold(files, () => evict(path), () => read(window + i * 262_144 + 8192));
    }
    assert.equal(files.readsFromDisk, coldReadsBeforeReadAhead - 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // What one cold read brings by itself: far from the window.
    const before = resident(path, window, readAheadBytes);
    assert.ok(before < windowPages / 2, `${before} pages of ${windowPages} before the read ahead`);
    // One more: the whole window, in the background.
    await readCold(files, () => evict(path), () => read(window + 3 * 1024 * 1024 + 8192));
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
