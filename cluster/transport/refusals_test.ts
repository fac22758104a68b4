import assert from "node:assert/strict";
import { RefusalError } from "./auth.ts";
import { refusalLogIntervalMs, refusalPeersMax, Refusals } from "./refusals.ts";

function clocks() {
  const lines: string[] = [];
  const time = { monotonicMs: 0, wallMs: Date.UTC(2026, 0, 1) };
  const refusals = new Refusals({
    log: (line) => lines.push(line),
    wallClock: () => time.wallMs,
    monotonicClock: () => time.monotonicMs,
  });
  return { refusals, lines, time };
}

const skewed = new RefusalError("clock-skew", "clock 600 s ahead of ours (limit 300 s)", {
  skewMs: 600_123.4,
});

Deno.test("Refusals counts by reason and peer, and logs one line per peer and reason a minute", () => {
  const { refusals, lines, time } = clocks();
  refusals.record("10.0.0.2:7946", skewed);
  refusals.record("10.0.0.2:7946", skewed);
  refusals.record("10.0.0.3:7946", skewed);
  refusals.record("10.0.0.2:7946", new RefusalError("authentication", "bad MAC"));
  assert.deepEqual(lines, [
    "refusing messages from 10.0.0.2:7946: clock 600 s ahead of ours (limit 300 s)",
    "refusing messages from 10.0.0.3:7946: clock 600 s ahead of ours (limit 300 s)",
    "refusing messages from 10.0.0.2:7946: bad MAC",
  ]);
  time.monotonicMs += refusalLogIntervalMs - 1;
  refusals.record("10.0.0.2:7946", skewed);
  assert.equal(lines.length, 3);
  time.monotonicMs += 1;
  time.wallMs += 1000;
  refusals.record("10.0.0.2:7946", skewed);
  assert.equal(lines.length, 4);
  assert.equal(refusals.byReason["clock-skew"], 5);
  assert.equal(refusals.byReason.authentication, 1);
  assert.deepEqual(refusals.status().peers[0], {
    address: "10.0.0.2:7946",
    reason: "clock-skew",
    count: 5,
    lastAt: "2026-01-01T00:00:01.000Z",
    skewMs: 600_123,
  });
});

Deno.test("Refusals counts unknown sessions without logging them", () => {
  const { refusals, lines } = clocks();
  refusals.record("10.0.0.2", new RefusalError("session", "unknown session"));
  assert.equal(refusals.byReason.session, 1);
  assert.deepEqual(lines, []);
});

Deno.test("Refusals keeps at most refusalPeersMax peers, forgetting the least recent", () => {
  const { refusals } = clocks();
  for (let i = 0; i <= refusalPeersMax; i++) refusals.record(`10.0.${i >> 8}.${i & 255}`, skewed);
  assert.equal(refusals.peers.size, refusalPeersMax);
  assert.ok(!refusals.peers.has("10.0.0.0"));
  assert.equal(refusals.byReason["clock-skew"], refusalPeersMax + 1);
});
