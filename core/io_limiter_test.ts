import assert from "node:assert/strict";
import { IoLimiter, type LimiterTimers } from "./io_limiter.ts";

/** A clock that moves only when told, and the timers on it. */
class ManualTimers implements LimiterTimers {
  nowMs = 0;
  #timers: { dueMs: number; fn: () => void; cancelled: boolean }[] = [];

  now = () => this.nowMs;

  after = (ms: number, fn: () => void) => {
    const timer = { dueMs: this.nowMs + ms, fn, cancelled: false };
    this.#timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  };

  /** Timers set and not cancelled or fired. */
  get pending(): number {
    return this.#timers.filter((timer) => !timer.cancelled).length;
  }

  /** Moves the clock `ms` ahead, firing every timer due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const endMs = this.nowMs + ms;
    for (;;) {
      this.#timers = this.#timers.filter((timer) => !timer.cancelled);
      this.#timers.sort((a, b) => a.dueMs - b.dueMs);
      const next = this.#timers[0];
      if (next === undefined || next.dueMs > endMs) break;
      this.#timers.shift();
      this.nowMs = Math.max(this.nowMs, next.dueMs);
      next.fn();
      await settle();
    }
    this.nowMs = endMs;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** Starts `count` requests of `kind` and `bytes`; answers how many went so far. */
function start(limiter: IoLimiter, count: number, kind: "read" | "write", bytes = 4096) {
  const done = { count: 0 };
  for (let i = 0; i < count; i++) {
    if (limiter.admit(kind, bytes)) done.count++;
    else limiter.wait(kind, bytes).then(() => done.count++);
  }
  return done;
}

Deno.test("IoLimiter without limits admits everything and sets no timer", () => {
  const timers = new ManualTimers();
  const limiter = new IoLimiter({}, timers);
  assert.equal(limiter.limited, false);
  for (let i = 0; i < 10_000; i++) assert.ok(limiter.admit("write", 1024 * 1024));
  assert.equal(timers.pending, 0);
});

Deno.test("IoLimiter lets a burst of a tenth of a second go, then holds the rate", async () => {
  const timers = new ManualTimers();
  const limiter = new IoLimiter({ iops: 500 }, timers);
  const done = start(limiter, 2000, "write");
  assert.equal(done.count, 50, "the default burst: 0.1 s at 500 IOPS");
  assert.equal(timers.pending, 1, "one timer for the whole queue");
  await timers.advance(1000);
  assert.equal(done.count, 550, "500 more in one second");
  await timers.advance(2000);
  assert.equal(done.count, 1550);
  assert.equal(limiter.throttledRequests, 1950);
  assert.ok(limiter.throttledMs > 0);
});

Deno.test("IoLimiter sums reads and writes against the total, each against its own", async () => {
  const timers = new ManualTimers();
  const limiter = new IoLimiter(
    { iops: 1000, iopsBurst: 1, iopsWrite: 100, iopsWriteBurst: 1 },
    timers,
  );
  const writes = start(limiter, 1000, "write");
  const reads = start(limiter, 1000, "read");
  await timers.advance(1000);
  // Writes are held to 100/s by their own limit; reads take the rest of the total.
  assert.ok(Math.abs(writes.count - 101) <= 2, `writes: ${writes.count}`);
  assert.ok(
    Math.abs(writes.count + reads.count - 1001) <= 2,
    `total: ${reads.count + writes.count}`,
  );
});

Deno.test("IoLimiter passes a request larger than the burst, and charges its debt", async () => {
  const timers = new ManualTimers();
  const limiter = new IoLimiter({ bps: 1000 }, timers); // a bucket of 100 bytes
  assert.ok(limiter.admit("read", 4096), "a full bucket lets a larger request go");
  assert.equal(limiter.admit("read", 1), false, "and is in debt for it");
  const done = start(limiter, 1, "read", 1);
  await timers.advance(3900);
  assert.equal(done.count, 0);
  await timers.advance(200);
  assert.equal(done.count, 1, "the debt is paid at the rate");
});

Deno.test("IoLimiter does not count trims' bytes: a zero-byte request needs no bandwidth", () => {
  const limiter = new IoLimiter({ bps: 1000 }, new ManualTimers());
  for (let i = 0; i < 1000; i++) assert.ok(limiter.admit("write", 0));
});

Deno.test("IoLimiter applies a raised limit to requests already waiting", async () => {
  const timers = new ManualTimers();
  const limiter = new IoLimiter({ iops: 10, iopsBurst: 1 }, timers);
  const done = start(limiter, 1000, "write");
  await timers.advance(1000);
  assert.equal(done.count, 11);
  limiter.set({ iops: 1000, iopsBurst: 1 });
  await timers.advance(500);
  assert.ok(Math.abs(done.count - 511) <= 2, `after the raise: ${done.count}`);
  limiter.set({});
  await settle();
  assert.equal(done.count, 1000, "no limit lets every waiting request go");
  assert.equal(limiter.limited, false);
  assert.equal(limiter.waiting, 0);
  assert.equal(timers.pending, 0);
});

Deno.test("IoLimiter keeps a throttled write from holding back a read", async () => {
  const timers = new ManualTimers();
  const limiter = new IoLimiter({ iopsWrite: 1, iopsWriteBurst: 1 }, timers);
  assert.ok(limiter.admit("write", 4096));
  const write = start(limiter, 1, "write");
  const read = start(limiter, 1, "read");
  await settle();
  assert.equal(read.count, 1, "the read went past the waiting write");
  assert.equal(write.count, 0);
  await timers.advance(1000);
  assert.equal(write.count, 1);
});
