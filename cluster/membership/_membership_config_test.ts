import assert from "node:assert/strict";
import {
  confirmationsWanted,
  membershipConfigDefault as c,
  pushPullIntervalFor,
  resolveConfig,
  suspicionFloorMs,
  suspicionMinMs,
  suspicionTimeoutMs,
  transmitLimit,
} from "./_membership_config.ts";

Deno.test("suspicion minimum follows memberlist: 4 × max(1, log10 N) × 1 s", () => {
  assert.equal(suspicionMinMs(c, 1), 4_000);
  assert.equal(suspicionMinMs(c, 5), 4_000);
  assert.equal(suspicionMinMs(c, 100), 8_000);
  assert.equal(Math.round(suspicionMinMs(c, 1000)), 12_000);
});

Deno.test("Lifeguard: a suspicion starts at 6 × the minimum and reaches it after 2 confirmations", () => {
  const off = resolveConfig({ pauseToleranceMs: 0 });
  assert.equal(suspicionTimeoutMs(off, 100, 1, false), 48_000);
  assert.equal(suspicionTimeoutMs(off, 100, 2, false), 22_762);
  assert.equal(suspicionTimeoutMs(off, 100, 3, false), 8_000);
  assert.equal(suspicionTimeoutMs(off, 100, 30, false), 8_000);
  // Too few members to expect confirmations: straight to the minimum (memberlist's rule).
  assert.equal(confirmationsWanted(off, 3), 0);
  assert.equal(suspicionTimeoutMs(off, 3, 1, false), 4_000);
});

Deno.test("the pause floor holds unless every other live member accused", () => {
  assert.equal(suspicionFloorMs(c), 11_000);
  assert.equal(suspicionTimeoutMs(c, 100, 3, false), 11_000);
  assert.equal(suspicionTimeoutMs(c, 5, 3, true), 4_000);
  assert.equal(Math.round(suspicionTimeoutMs(c, 1000, 3, false)), 12_000, "above the floor anyway");
  assert.equal(suspicionFloorMs(resolveConfig({ pauseToleranceMs: 0 })), 0);
});

Deno.test("retransmits and push-pull intervals scale with the cluster as memberlist's do", () => {
  assert.equal(transmitLimit(c, 5), 5);
  assert.equal(transmitLimit(c, 50), 10);
  assert.equal(transmitLimit(c, 100), 15);
  assert.equal(transmitLimit(c, 1000), 20);
  assert.equal(pushPullIntervalFor(c, 32), 30_000);
  assert.equal(pushPullIntervalFor(c, 50), 60_000);
  assert.equal(pushPullIntervalFor(c, 100), 90_000);
  assert.equal(pushPullIntervalFor(c, 1000), 180_000);
});
