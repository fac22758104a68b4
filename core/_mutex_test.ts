import assert from "node:assert/strict";
import { SharedMutex } from "./_mutex.ts";

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

Deno.test("SharedMutex: shared holders overlap, an exclusive one runs alone, in FIFO order", async () => {
  const mutex = new SharedMutex();
  const events: string[] = [];
  let running = 0, most = 0;
  const shared = (name: string) =>
    mutex.runShared(async () => {
      running++;
      most = Math.max(most, running);
      events.push(`${name}+`);
      await tick();
      events.push(`${name}-`);
      running--;
    });
  const exclusive = (name: string) =>
    mutex.run(async () => {
      assert.equal(running, 0, `${name} ran beside a shared holder`);
      events.push(`${name}+`);
      await tick();
      events.push(`${name}-`);
    });
  await Promise.all([shared("a"), shared("b"), exclusive("X"), shared("c"), exclusive("Y")]);
  assert.equal(most, 2, "a and b overlapped");
  // X waits for a and b; c (queued after X) waits for X; Y waits for c.
  assert.deepEqual(events.slice(4), ["X+", "X-", "c+", "c-", "Y+", "Y-"]);
  await assert.rejects(mutex.run(() => Promise.reject(new Error("boom"))), /boom/);
  await mutex.runShared(() => {}); // a failed holder released the lock
});
