import assert from "node:assert/strict";
import { formatSize, parseSize } from "./size.ts";

Deno.test("parseSize() reads plain byte counts", () => {
  assert.equal(parseSize("0"), 0);
  assert.equal(parseSize("4096"), 4096);
  assert.equal(parseSize("512B"), 512);
  assert.equal(parseSize(" 77 "), 77);
});

Deno.test("parseSize() reads K, M, G, T as binary multiples, any case, with optional iB", () => {
  assert.equal(parseSize("1K"), 1024);
  assert.equal(parseSize("64m"), 64 * 1024 ** 2);
  assert.equal(parseSize("10G"), 10 * 1024 ** 3);
  assert.equal(parseSize("10GiB"), 10 * 1024 ** 3);
  assert.equal(parseSize("10 GiB"), 10 * 1024 ** 3);
  assert.equal(parseSize("2T"), 2 * 1024 ** 4);
  assert.equal(parseSize("1P"), 1024 ** 5);
});

Deno.test("parseSize() accepts fractions that make whole bytes", () => {
  assert.equal(parseSize("1.5G"), 1.5 * 1024 ** 3);
  assert.equal(parseSize("0.5K"), 512);
  assert.throws(() => parseSize("1.3"), /not a whole number of bytes/);
  assert.throws(() => parseSize("0.1K"), /not a whole number of bytes/);
});

Deno.test("parseSize() rejects what is not a size, naming it", () => {
  for (const text of ["", "G", "-1", "1e9", "10X", "ten", "1,024", "0x10", "10 G B"]) {
    assert.throws(() => parseSize(text), (error: Error) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, new RegExp(`^Cannot use size ${JSON.stringify(text)}`));
      return true;
    });
  }
});

Deno.test("parseSize() explains that GB is not accepted because suffixes are binary", () => {
  assert.throws(() => parseSize("10GB"), /suffixes are binary: write G or GiB/);
});

Deno.test("parseSize() rejects sizes beyond safe integers", () => {
  assert.throws(() => parseSize("99999999P"), /below 2\^53/);
  assert.throws(() => parseSize("9007199254740993"), /below 2\^53/);
});

Deno.test("formatSize() shows bytes below 1 KiB as they are", () => {
  assert.equal(formatSize(0), "0 B");
  assert.equal(formatSize(512), "512 B");
  assert.equal(formatSize(1023), "1023 B");
});

Deno.test("formatSize() uses binary units with one decimal", () => {
  assert.equal(formatSize(1024), "1.0 KiB");
  assert.equal(formatSize(1536), "1.5 KiB");
  assert.equal(formatSize(2 * 1024 ** 3), "2.0 GiB");
  assert.equal(formatSize(5_000_000), "4.8 MiB");
  assert.equal(formatSize(64 * 1024 ** 4), "64.0 TiB");
});

Deno.test("formatSize() never shows 1024.0 of a unit", () => {
  assert.equal(formatSize(1024 * 1024 - 1), "1.0 MiB");
  assert.equal(formatSize(1024 ** 3 - 1000), "1.0 GiB");
});

Deno.test("formatSize() shows a dash for values that are not byte counts", () => {
  assert.equal(formatSize(-1), "-");
  assert.equal(formatSize(NaN), "-");
  assert.equal(formatSize(Infinity), "-");
});

Deno.test("formatSize() and parseSize() round-trip whole units", () => {
  for (const text of ["1.0 KiB", "3.0 MiB", "10.0 GiB", "2.0 TiB"]) {
    assert.equal(formatSize(parseSize(text)), text);
  }
});
