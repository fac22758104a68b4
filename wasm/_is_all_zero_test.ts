import assert from "node:assert/strict";
import { isAllZero } from "./_is_all_zero.ts";

Deno.test("isAllZero() is true for empty and all-zero views of any length", () => {
  assert.equal(isAllZero(new Uint8Array(0)), true);
  for (const length of [1, 3, 4, 5, 31, 32, 33, 4096, 4 * 1024 * 1024]) {
    assert.equal(isAllZero(new Uint8Array(length)), true, `length ${length}`);
  }
});

Deno.test("isAllZero() finds a single nonzero byte at every position and alignment", () => {
  // Goal: cover the unaligned head, the unrolled word loop, the word tail and the byte
  // tail. Method: every byteOffset 0..3 and every position of the one nonzero byte.
  const buffer = new ArrayBuffer(80);
  for (let offset = 0; offset < 4; offset++) {
    for (let length = 1; length <= 70; length++) {
      const view = new Uint8Array(buffer, offset, length);
      for (let position = 0; position < length; position++) {
        view.fill(0);
        view[position] = 0x80;
        assert.equal(isAllZero(view), false, `offset ${offset} length ${length} at ${position}`);
      }
      view.fill(0);
      assert.equal(isAllZero(view), true, `offset ${offset} length ${length}`);
    }
  }
});

Deno.test("isAllZero() ignores nonzero bytes outside the view", () => {
  const backing = new Uint8Array(64).fill(0xff);
  backing.fill(0, 5, 59);
  assert.equal(isAllZero(backing.subarray(5, 59)), true);
  assert.equal(isAllZero(backing.subarray(4, 59)), false);
  assert.equal(isAllZero(backing.subarray(5, 60)), false);
});
