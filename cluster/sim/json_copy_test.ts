/**
 * Goal: the simulated network copies a header exactly as the real transport's
 * JSON would carry it (the soak's digests stay what they were), faster.
 */
import assert from "node:assert/strict";
import { jsonCopy } from "./_cluster_sim_node.ts";

Deno.test("jsonCopy gives what a JSON round trip gives, as a new object", () => {
  const values: unknown[] = [
    { method: "px.peek", config: { voters: ["n0", "n1"], next: null }, epoch: 3 },
    { gone: undefined, f: () => 1, nan: NaN, inf: -Infinity, zero: -0, ok: true },
    [1, undefined, () => 2, [null, "x", { a: [] }]],
    { when: new Date(0), nested: { list: [new Map([[1, 2]]), new Uint8Array([1, 2])] } },
    "text",
    7,
    null,
  ];
  for (const value of values) {
    const copy = jsonCopy(value);
    assert.deepEqual(copy, JSON.parse(JSON.stringify(value)));
    if (value !== null && typeof value === "object") assert.notEqual(copy, value);
  }
  const header = { changes: [{ name: "o", version: 1 }] };
  const copy = jsonCopy(header) as typeof header;
  copy.changes[0].version = 2;
  assert.equal(header.changes[0].version, 1, "the copy shares nothing");
});
