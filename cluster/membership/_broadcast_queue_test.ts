import assert from "node:assert/strict";
import { BroadcastQueue } from "./_broadcast_queue.ts";
import type { Update } from "./messages.ts";

const left = (id: string, incarnation = 0): Update => ({ kind: "left", id, incarnation });

Deno.test("BroadcastQueue sends least-sent updates first, oldest first among equals", () => {
  const queue = new BroadcastQueue();
  queue.enqueue(left("a"));
  queue.enqueue(left("b"));
  assert.deepEqual(queue.take(1000, 10, 1).map((u) => u.id), ["a"]);
  queue.enqueue(left("c"));
  // b and c have never been sent; a has, once.
  assert.deepEqual(queue.take(1000, 10, 2).map((u) => u.id), ["b", "c"]);
  assert.deepEqual(queue.take(1000, 10, 3).map((u) => u.id), ["a", "b", "c"]);
});

Deno.test("BroadcastQueue drops an update after its transmit limit", () => {
  const queue = new BroadcastQueue();
  queue.enqueue(left("a"));
  for (let i = 0; i < 3; i += 1) assert.equal(queue.take(1000, 3, 10).length, 1);
  assert.equal(queue.size, 0);
  assert.deepEqual(queue.take(1000, 3, 10), []);
});

Deno.test("BroadcastQueue keeps one update per member, the newest, with a fresh count", () => {
  const queue = new BroadcastQueue();
  queue.enqueue(left("a", 1));
  queue.take(1000, 2, 10);
  queue.enqueue(left("a", 2));
  assert.equal(queue.size, 1);
  assert.ok(queue.has("a"));
  assert.deepEqual(queue.take(1000, 2, 10), [left("a", 2)]);
  assert.deepEqual(queue.take(1000, 2, 10), [left("a", 2)], "counted from zero again");
  assert.equal(queue.size, 0);
});

Deno.test("BroadcastQueue skips updates that do not fit the byte budget", () => {
  const queue = new BroadcastQueue();
  const big: Update = {
    kind: "suspect",
    id: "x".repeat(100),
    incarnation: 0,
    from: "y".repeat(100),
  };
  queue.enqueue(big);
  queue.enqueue(left("a"));
  assert.deepEqual(queue.take(60, 5, 10).map((u) => u.id), ["a"]);
  assert.deepEqual(queue.take(10, 5, 10), []);
  assert.equal(queue.take(1000, 5, 10).length, 2);
});
