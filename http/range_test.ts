import assert from "node:assert/strict";
import { parseRange } from "./range.ts";

Deno.test("parseRange() reads first-last, open-ended and suffix forms", () => {
  assert.deepEqual(parseRange("bytes=0-99", 1000), { kind: "part", offset: 0, length: 100 });
  assert.deepEqual(parseRange("bytes=900-", 1000), { kind: "part", offset: 900, length: 100 });
  assert.deepEqual(parseRange("bytes=-10", 1000), { kind: "part", offset: 990, length: 10 });
  assert.deepEqual(parseRange("bytes=-5000", 1000), { kind: "part", offset: 0, length: 1000 });
  assert.deepEqual(parseRange("bytes=990-5000", 1000), { kind: "part", offset: 990, length: 10 });
});

Deno.test("parseRange() answers unsatisfiable for a range past the end", () => {
  assert.deepEqual(parseRange("bytes=1000-", 1000), { kind: "unsatisfiable" });
  assert.deepEqual(parseRange("bytes=5000-6000", 1000), { kind: "unsatisfiable" });
  assert.deepEqual(parseRange("bytes=-0", 1000), { kind: "unsatisfiable" });
});

Deno.test("parseRange() ignores absent, malformed and multi-range headers", () => {
  for (const header of [null, undefined, "", "bytes=", "items=0-1", "bytes=0-1,5-6", "bytes=9-3"]) {
    assert.deepEqual(parseRange(header, 1000), { kind: "whole" }, String(header));
  }
});
