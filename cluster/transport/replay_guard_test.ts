import assert from "node:assert/strict";
import { ReplayGuard, replayWindowSequencesMax, SequenceWindow } from "./replay_guard.ts";

Deno.test("SequenceWindow accepts each number once, in any order within the window", () => {
  const window = new SequenceWindow();
  for (const sequence of [5, 1, 3, 2, 4, 7]) assert.equal(window.accept(sequence), true);
  for (const sequence of [1, 2, 3, 4, 5, 7]) assert.equal(window.accept(sequence), false);
  assert.equal(window.accept(6), true);
  assert.equal(window.accept(0), false, "sequence numbers start at 1");
});

Deno.test("SequenceWindow refuses numbers older than the window, and forgets across a jump", () => {
  const window = new SequenceWindow();
  const top = 3 * replayWindowSequencesMax;
  assert.equal(window.accept(top), true);
  assert.equal(window.accept(top - replayWindowSequencesMax), false, "too old to tell");
  assert.equal(window.accept(top - replayWindowSequencesMax + 1), true);
  // A slot reused by a number one window later is free again.
  assert.equal(window.accept(top + 1), true);
  assert.equal(window.accept(top + replayWindowSequencesMax - 1), true);
  assert.equal(window.accept(top + 1), false, "still remembered");
  assert.equal(window.accept(top + 10 * replayWindowSequencesMax), true);
  assert.equal(window.accept(top + 10 * replayWindowSequencesMax - 5), true);
});

Deno.test("ReplayGuard refuses unknown sessions, starts new boots, forgets the least used", () => {
  const guard = new ReplayGuard(2);
  assert.equal(guard.accept("s1", 1, false), "session");
  guard.add("s1");
  assert.equal(guard.accept("s1", 1, false), null);
  assert.equal(guard.accept("s1", 1, false), "replay");
  assert.equal(guard.accept("boot-a", 1, true), null);
  assert.equal(guard.accept("s1", 2, false), null); // s1 is now the most recently used
  assert.equal(guard.accept("boot-b", 1, true), null); // evicts boot-a
  assert.equal(guard.size, 2);
  assert.equal(guard.accept("s1", 3, false), null);
  assert.equal(guard.accept("boot-a", 1, true), null, "forgotten, so started afresh");
  assert.equal(guard.accept("boot-b", 1, false), "session", "evicted in its turn");
});
