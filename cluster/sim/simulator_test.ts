// Tests of the simulator's own mechanics: event order, randomness, and what kill, pause,
// partition, join and leave do to the nodes (observed through their membership views).

import assert from "node:assert/strict";
import { EventQueue, type QueuedEvent } from "./_event_queue.ts";
import { Views } from "./_sim_scenarios.ts";
import { Random, Simulator, type TraceEvent } from "./simulator.ts";

Deno.test("EventQueue pops by time, then by insertion order, without removed events", () => {
  const queue = new EventQueue<QueuedEvent & { name: string }>();
  const random = new Random(9);
  const events = Array.from({ length: 500 }, (_, i) => ({
    time: Math.floor(random.next() * 20),
    seq: 0,
    index: -1,
    name: `e${i}`,
  }));
  for (const event of events) queue.push(event);
  const removed = events.filter((_, i) => i % 7 === 3);
  for (const event of removed) queue.remove(event);
  queue.remove(removed[0]);
  const popped = [];
  while (queue.size > 0) popped.push(queue.pop()!);
  const expected = events.filter((e) => !removed.includes(e))
    .sort((a, b) => a.time - b.time || a.seq - b.seq);
  assert.deepEqual(popped.map((e) => e.name), expected.map((e) => e.name));
});

Deno.test("Random: a seed gives one stream, other seeds and streams give others", () => {
  const draw = (seed: number, stream = 0) => {
    const random = new Random(seed, stream);
    return Array.from({ length: 5 }, () => random.next());
  };
  assert.deepEqual(draw(1), draw(1));
  assert.notDeepEqual(draw(1), draw(2));
  assert.notDeepEqual(draw(1, 0), draw(1, 1));
  const random = new Random(3);
  let sum = 0;
  for (let i = 0; i < 100_000; i += 1) {
    const x = random.next();
    assert.ok(x >= 0 && x < 1);
    sum += x;
  }
  assert.ok(Math.abs(sum / 100_000 - 0.5) < 0.01);
});

Deno.test("a killed node stops: it records nothing and is declared dead", () => {
  const sim = new Simulator({ seed: 1 });
  const views = new Views(sim, 5);
  sim.bootstrap(5);
  sim.run(3_000);
  sim.kill(4);
  const after: TraceEvent[] = [];
  sim.onTrace((e) => after.push(e));
  sim.run(40_000);
  assert.ok(after.every((e) => e.observer !== 4));
  assert.equal(views.missing(4, "dead"), 0);
});

Deno.test("a paused node runs its overdue timers on resume, then reads its backlog", () => {
  const sim = new Simulator({ seed: 2 });
  const views = new Views(sim, 5);
  sim.bootstrap(5);
  sim.run(3_000);
  sim.pause(2, 6_000);
  const byPaused: TraceEvent[] = [];
  sim.onTrace((e) => {
    if (e.observer === 2) byPaused.push(e);
  });
  sim.run(8_999);
  assert.deepEqual(byPaused, [], "nothing runs while paused");
  sim.run(9_000);
  // Its first act: the late timers reveal the stall and it refutes, before any message.
  assert.deepEqual(byPaused[0], {
    timeMs: 9_000,
    observer: 2,
    member: 2,
    status: "alive",
    incarnation: 1,
  });
  sim.run(15_000);
  for (const observer of [0, 1, 3, 4]) assert.equal(views.status(observer, 2), "alive");
});

Deno.test("a partition cuts datagrams and streams; each side declares the other dead", () => {
  const sim = new Simulator({ seed: 3 });
  const views = new Views(sim, 6);
  sim.bootstrap(6);
  sim.run(2_000);
  sim.partition([[0, 1, 2], [3, 4, 5]]);
  sim.run(60_000);
  for (const a of [0, 1, 2]) {
    for (const b of [3, 4, 5]) {
      assert.equal(views.status(a, b), "dead");
      assert.equal(views.status(b, a), "dead");
    }
  }
  sim.heal();
  sim.run(150_000);
  assert.ok(views.converged());
});

Deno.test("a node added later joins through its seed and everyone learns it", () => {
  const sim = new Simulator({ seed: 4 });
  const views = new Views(sim, 6);
  sim.bootstrap(5);
  const joiner = sim.addNode({ atMs: 10_000, seeds: [3], zone: "z9", weight: 2 });
  sim.run(9_999);
  assert.equal(joiner.membership, null);
  sim.run(15_000);
  assert.equal(views.missing(joiner.index, "alive"), 0);
  const seen = sim.nodes[0].membership!.members().find((m) => m.id === joiner.id);
  assert.equal(seen?.zone, "z9");
  assert.equal(seen?.weight, 2);
  assert.equal(joiner.membership!.members().length, 6);
});

Deno.test("a node that leaves is seen as left, not dead", () => {
  const sim = new Simulator({ seed: 5 });
  const views = new Views(sim, 5);
  sim.bootstrap(5);
  sim.run(3_000);
  sim.leave(1);
  sim.run(60_000);
  assert.equal(views.missing(1, "left"), 0);
});

Deno.test("streams survive datagram loss (retransmitted), datagrams do not", () => {
  const sim = new Simulator({ seed: 6, lossRate: 0.5 });
  const views = new Views(sim, 3);
  sim.bootstrap(2);
  const joiner = sim.addNode({ atMs: 1_000, seeds: [0] });
  sim.run(20_000);
  assert.equal(views.status(0, joiner.index), "alive");
  assert.ok(sim.stats.messages > 0);
});

Deno.test("a member restarted under its id refutes its death, or its leave, and is back", () => {
  const sim = new Simulator({ seed: 7 });
  const views = new Views(sim, 5);
  sim.bootstrap(5);
  sim.run(3_000);
  sim.kill(1);
  sim.run(30_000);
  assert.equal(views.missing(1, "dead"), 0);
  sim.restart(1, [0]);
  sim.run(35_000);
  assert.equal(views.missing(1, "alive"), 0);
  assert.ok(sim.nodes[0].membership!.members()[1].incarnation >= 1, "refuted with a higher one");
  sim.leave(2);
  sim.run(45_000);
  assert.equal(views.missing(2, "left"), 0);
  sim.restart(2, [3]);
  sim.run(50_000);
  assert.equal(views.missing(2, "alive"), 0);
  assert.ok(views.converged());
});
