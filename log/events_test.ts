import assert from "node:assert/strict";
import { configureLogging, eventsMax, logger, recentEvents } from "./mod.ts";

Deno.test("the event ring takes its components' info lines even when the log is quieter", () => {
  const lines: string[] = [];
  configureLogging({ format: "text", level: "error", write: (line) => lines.push(line) });
  const before = recentEvents.after().at(-1)?.seq ?? 0;
  logger("leases").info("write lease of volume {volume} moved to {to}", { volume: "vm1", to: "b" });
  logger("http").info("GET / 200");
  logger("http").warn("overloaded");
  logger("store").error("broken {thing}", { thing: { a: 1 } });
  const events = recentEvents.after(before);
  assert.deepEqual(events.map((event) => [event.component, event.level, event.message]), [
    ["leases", "info", "write lease of volume vm1 moved to b"],
    ["http", "warning", "overloaded"],
    ["store", "error", 'broken {"a":1}'],
  ]);
  assert.deepEqual(events[0].properties, { volume: "vm1", to: "b" });
  assert.equal(events[2].properties.thing, '{"a":1}');
  // The log itself keeps its level: only the error line was written.
  assert.equal(lines.length, 1);
  assert.match(lines[0], /broken/);
});

Deno.test("the event ring keeps the last eventsMax events, numbered", () => {
  configureLogging({ format: "text", level: "error", write: () => {} });
  for (let i = 0; i < eventsMax + 10; i++) logger("gc").info("collection {i}", { i });
  const events = recentEvents.after();
  assert.equal(events.length, eventsMax);
  assert.equal(events.at(-1)!.properties.i, eventsMax + 9);
  assert.equal(events[0].seq + eventsMax - 1, events.at(-1)!.seq);
  assert.deepEqual(recentEvents.after(events.at(-1)!.seq), []);
});
