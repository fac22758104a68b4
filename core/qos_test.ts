import assert from "node:assert/strict";
import { checkQos, mergeQos } from "./qos.ts";
import { qosBpsMax, qosIopsMax } from "./limits.ts";

Deno.test("checkQos() takes positive integer limits and puts rates before bursts", () => {
  assert.deepEqual(checkQos({ bpsBurst: 2048, bps: 1024, iops: 500, iopsWrite: null }), {
    iops: 500,
    bps: 1024,
    bpsBurst: 2048,
  });
  assert.deepEqual(checkQos({}), {});
  assert.deepEqual(checkQos({ iops: qosIopsMax, bps: qosBpsMax }), {
    iops: qosIopsMax,
    bps: qosBpsMax,
  });
});

Deno.test("checkQos() refuses bad limits with a message naming the limit", () => {
  const cases: [unknown, RegExp][] = [
    [null, /expected an object/],
    [[500], /expected an object/],
    [{ iops: -1 }, /iops must be a positive integer/],
    [{ iops: 0 }, /iops must be a positive integer/],
    [{ iops: 1.5 }, /iops must be a positive integer/],
    [{ iops: "500" }, /iops must be a positive integer.*"500"/],
    [{ bps: 1e300 }, /bps of 1e\+300 is over its maximum/],
    [{ iops: qosIopsMax + 1 }, /iops of 10000001 is over its maximum of 10000000/],
    [{ bpsRead: qosBpsMax * 2 }, /bpsRead .* over its maximum/],
    [{ iopsTotal: 5 }, /unknown limit "iopsTotal"/],
    [{ iopsBurst: 5 }, /iopsBurst needs iops/],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => checkQos(value), message, JSON.stringify(value));
  }
});

Deno.test("mergeQos() sets what is given, removes what is null, keeps the rest", () => {
  const current = { iops: 500, iopsBurst: 600, bps: 1024 };
  assert.deepEqual(mergeQos(current, { iops: 1000 }), { iops: 1000, bps: 1024, iopsBurst: 600 });
  assert.deepEqual(mergeQos(current, { iops: null }), { bps: 1024 }, "a rate takes its burst");
  assert.deepEqual(mergeQos(current, { iopsBurst: null }), { iops: 500, bps: 1024 });
  assert.throws(() => mergeQos(current, { bps: -5 }), /bps must be a positive integer/);
});
