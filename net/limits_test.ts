import assert from "node:assert/strict";
import { parseFilesLimit } from "./files_limit.ts";
import {
  filesLimitMin,
  filesReserved,
  httpConnectionsMax,
  listenerBudget,
  nbdConnectionsMax,
} from "./limits.ts";

Deno.test("listenerBudget() keeps every listener's cap within a 1024 open-files limit", () => {
  const budget = listenerBudget(1024);
  const connections = budget.http.connectionsMax + budget.nbd.connectionsMax +
    budget.cluster.connectionsMax;
  assert.ok(budget.engineFilesMax + filesReserved + connections <= 1024);
  assert.ok(budget.http.connectionsMax < 1024 / 4, "1200 HTTP connections are mostly refused");
  assert.ok(budget.nbd.connectionsMax >= 2 * budget.http.connectionsMax, "the VMs' disks first");
  assert.ok(budget.http.connectionsPerAddressMax <= budget.http.connectionsMax);
});

Deno.test("listenerBudget() uses the listeners' maxima when the limit is large", () => {
  const budget = listenerBudget(1_048_576);
  assert.equal(budget.http.connectionsMax, httpConnectionsMax);
  assert.equal(budget.nbd.connectionsMax, nbdConnectionsMax);
});

Deno.test("listenerBudget() refuses a limit too small to serve", () => {
  assert.throws(() => listenerBudget(filesLimitMin - 1), RangeError);
});

Deno.test("parseFilesLimit() reads the Max open files line of /proc/PID/limits", () => {
  const text = "Limit                     Soft Limit           Hard Limit           Units\n" +
    "Max processes             62987                62987                processes\n" +
    "Max open files            1024                 524288               files\n";
  assert.deepEqual(parseFilesLimit(text), { soft: 1024, hard: 524288 });
  assert.equal(parseFilesLimit("Max processes 1 1 processes\n"), null);
});
