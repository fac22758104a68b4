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

Deno.test("a buffer the toucher's worker touched fills without page faults on this thread", async () => {
  const toucher = new MemoryToucher();
  try {
    const pages = (32 * MiB) / 4096;
    const untouched = new SharedArrayBuffer(32 * MiB);
    assert.ok(faultsOfFill(untouched) >= pages / 2, "a fresh buffer faults on this thread");
    const touched = [new SharedArrayBuffer(32 * MiB), new SharedArrayBuffer(32 * MiB)];
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
