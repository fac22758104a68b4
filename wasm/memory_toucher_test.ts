/**
 * Goal: memory a MemoryToucher's worker touched costs the thread that fills it
 * no page faults, its bytes stay zero, requests queue, and a closed toucher
 * refuses.
 * Method: a real worker on real shared buffers; the main thread's own minor
 * page faults read from /proc/thread-self/stat around a fill (counted, not
 * timed).
 */
import assert from "node:assert/strict";
import { MemoryToucher } from "./memory_toucher.ts";

const MiB = 1024 * 1024;

/** Minor page faults of the calling thread so far. */
function threadFaults(): number {
  const stat = Deno.readTextFileSync("/proc/thread-self/stat");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[7]); // field 10, minflt
}

/** The calling thread's page faults while it writes every byte of `buffer`. */
function faultsOfFill(buffer: SharedArrayBuffer): number {
  const bytes = new Uint8Array(buffer);
  const before = threadFaults();
  bytes.fill(7);
  return threadFaults() - before;
}

const libc = Deno.dlopen("libc.so.6", {
  madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
});
const adviseDontNeed = 4; // MADV_DONTNEED

/**
 * `buffer` with its pages unmapped from the process (`MADV_DONTNEED`), so that
 * the next write of each faults: a new buffer may lie in memory the process
 * wrote and let go before (an earlier test's), which is still mapped.
 */
function fresh(buffer: SharedArrayBuffer): SharedArrayBuffer {
  const start = Deno.UnsafePointer.value(Deno.UnsafePointer.of(new Uint8Array(buffer)));
  const first = (BigInt(start) + 4095n) & ~4095n;
  const length = (BigInt(start) + BigInt(buffer.byteLength) - first) & ~4095n;
  const pointer = Deno.UnsafePointer.create(first);
  assert.equal(libc.symbols.madvise(pointer, length, adviseDontNeed), 0, "madvise");
  return buffer;
}

Deno.test("a buffer the toucher's worker touched fills without page faults on this thread", async () => {
  const toucher = new MemoryToucher();
  try {
    const bytes = 32 * MiB;
    const pages = bytes / 4096;
    const untouched = fresh(new SharedArrayBuffer(bytes));
    assert.ok(faultsOfFill(untouched) >= pages / 2, "a fresh buffer faults on this thread");
    const touched = [fresh(new SharedArrayBuffer(bytes)), fresh(new SharedArrayBuffer(bytes))];
    await Promise.all(touched.map((buffer) => toucher.touch(buffer)));
    for (const buffer of touched) {
      assert.ok(new Uint8Array(buffer).every((byte) => byte === 0), "touching leaves zeros");
      assert.ok(faultsOfFill(buffer) < pages / 16, "touched memory faults no more here");
    }
  } finally {
    toucher.close();
  }
});

Deno.test("a closed toucher refuses, and fails what it had not done", async () => {
  const toucher = new MemoryToucher();
  const waiting = toucher.touch(new SharedArrayBuffer(64 * MiB));
  toucher.close();
  await assert.rejects(waiting, /closed/);
  await assert.rejects(toucher.touch(new SharedArrayBuffer(4096)), /closed/);
});
