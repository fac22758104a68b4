/**
 * Goal: floors keep their holders through the metadata's encoding, merge by
 * stamp (holders of equal stamps joined), and floors saved before holders were
 * recorded still read, as floors of unknown holders (never given up).
 * Method: mergeFloors/decodeFloors on bytes, as the register keeps them.
 */
import assert from "node:assert/strict";
import { decodeFloors, type Floor, mergeFloors } from "./object_floors.ts";

Deno.test("floors keep their holders, merge by stamp, and read from the older encoding", () => {
  const raise = (value: Uint8Array | null, entries: [string, Floor][]) =>
    mergeFloors(value, new Map(entries));
  let value = raise(null, [["o.1.0", { stamp: [2, 5], holders: ["n1"] }]]);
  value = raise(value, [["o.1.0", { stamp: [2, 5], holders: ["n3"] }]]);
  assert.deepEqual(decodeFloors(value).get("o.1.0"), { stamp: [2, 5], holders: ["n1", "n3"] });
  value = raise(value, [["o.1.0", { stamp: [2, 4], holders: ["n2"] }]]);
  assert.deepEqual(decodeFloors(value).get("o.1.0"), { stamp: [2, 5], holders: ["n1", "n3"] });
  value = raise(value, [["o.1.0", { stamp: [3, 1], holders: ["n2"] }]]);
  assert.deepEqual(decodeFloors(value).get("o.1.0"), { stamp: [3, 1], holders: ["n2"] });
  const older = new TextEncoder().encode(JSON.stringify({ "o.1.1": [1, 7] }));
  assert.deepEqual(decodeFloors(older).get("o.1.1"), { stamp: [1, 7], holders: [] });
  const merged = decodeFloors(raise(older, [["o.1.1", { stamp: [1, 7], holders: ["n4"] }]]));
  assert.deepEqual(merged.get("o.1.1"), { stamp: [1, 7], holders: ["n4"] });
});
