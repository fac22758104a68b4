// Goal: the placement hashes are the reference MurmurHash3 bit for bit, and the keyed mix
// gives uniform, independent values in (0, 1). Method: vectors from the reference C code
// (smhasher's MurmurHash3_x86_128 fed the UTF-16LE bytes), then chi-square and avalanche
// counts over seeded inputs, with bounds far from what an ideal hash reaches.
import assert from "node:assert/strict";
import { fmix32, murmur3String128, unitBits, unitFromHash } from "./_hash64.ts";
import { random32 } from "./_test_names.ts";

function hex128(text: string, seed: number): string {
  const out = new Uint32Array(4);
  murmur3String128(text, seed, out);
  return [...out].map((word) => word.toString(16).padStart(8, "0")).join(" ");
}

/** Pearson's chi-square statistic of `counts` against a uniform expectation. */
function chiSquare(counts: ArrayLike<number>): number {
  let total = 0;
  for (let bucket = 0; bucket < counts.length; bucket++) total += counts[bucket];
  const expected = total / counts.length;
  let sum = 0;
  for (let bucket = 0; bucket < counts.length; bucket++) {
    sum += (counts[bucket] - expected) ** 2 / expected;
  }
  return sum;
}

/** A chi-square bound `sigmas` standard deviations above the mean for `buckets` buckets. */
function chiSquareBound(buckets: number, sigmas: number): number {
  const freedom = buckets - 1;
  return freedom + sigmas * Math.sqrt(2 * freedom);
}

const blockName = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

Deno.test("murmur3String128() matches the reference on UTF-16LE bytes", () => {
  // Every tail length 0..7 code units, a full block, and non-ASCII (a surrogate pair).
  const vectors: [string, number, string][] = [
    ["", 0, "00000000 00000000 00000000 00000000"],
    ["a", 0, "033bb196 ccef4fe1 ccef4fe1 ccef4fe1"],
    ["ab", 0, "260fb953 af22b6fd af22b6fd af22b6fd"],
    ["abc", 0, "2b5b97a3 20f75fb5 5012c2b4 5012c2b4"],
    ["volume/vm1", 0, "7e6f5633 af216f4e 29bfbb87 c64fc4c0"],
    ["0123456", 0, "b486d475 587c4a63 fcf88868 2d417688"],
    ["01234567", 0, "6dfcf55b 9db5fbd5 9f65185f a018ca2d"],
    ["012345678", 0, "fc0e6ce3 efe449c0 1bec22a7 41c93d42"],
    ["0123456789abcde", 0, "da738a7c 5a1171ed 670d4612 fbf00374"],
    [blockName, 0, "b82d9b89 fd97ec5f e88cab4b d8cf5f81"],
    ["3f2a9c1e.7.1234", 0, "9e6798ca 67fcb978 16d9707c 982ee97b"],
    ["é€𝄞x", 0, "1f37e158 b7d06c25 23187e8d 532cf1a5"],
    ["", 0x9747b28c, "f7bed5a1 5b576a1c 5b576a1c 5b576a1c"],
    ["abc", 0x9747b28c, "949e2c7f 6778c095 3e734827 3e734827"],
    ["volume/vm1", 0x9747b28c, "fcab4cf0 bbac076d bedf1247 2d8922cd"],
    ["012345678", 0x9747b28c, "6e53e3dd 0900fccb d24841ba 350e7acb"],
    [blockName, 0x9747b28c, "466f3aa6 cc1ea83f 63847d55 3645116e"],
    ["é€𝄞x", 0x9747b28c, "8e30a026 d247edee b8b406fe c3e1ae67"],
  ];
  for (const [text, seed, expected] of vectors) {
    assert.equal(hex128(text, seed), expected, `${JSON.stringify(text)} seed ${seed}`);
  }
});

Deno.test("fmix32() is MurmurHash3's finalizer", () => {
  assert.equal(fmix32(0), 0);
  assert.equal(fmix32(1) >>> 0, 0x514e28b7);
  assert.equal(fmix32(0xdeadbeef) >>> 0, 0x0de5c6a9);
  assert.equal(fmix32(0x80000000) >>> 0, 0x6d3c65a0);
});

Deno.test("unitFromHash() stays inside (0, 1) on 52-bit half-steps", () => {
  const extremes = [0, 1, -1, 0x7fffffff, -0x80000000, 0x55555555, 0xaaaaaaaa];
  const next = random32(1);
  const inputs = extremes.flatMap((a) => extremes.map((b) => [a, b, next(), next()]));
  for (let sample = 0; sample < 10_000; sample++) inputs.push([next(), next(), next(), next()]);
  for (const [nameHi, nameLo, seedHi, seedLo] of inputs) {
    const unit = unitFromHash(nameHi, nameLo, seedHi, seedLo);
    assert.ok(unit > 0 && unit < 1, `u = ${unit}`);
    assert.ok(Number.isInteger(unit * 2 ** unitBits - 0.5), `u = ${unit} is not (k + 1/2) / 2^52`);
    // Inputs are taken modulo 2^32, so signed and unsigned spellings agree.
    assert.equal(unitFromHash(nameHi >>> 0, nameLo >>> 0, seedHi | 0, seedLo | 0), unit);
  }
});

Deno.test("unitFromHash() of real name shapes is uniform over 64 buckets", () => {
  const out = new Uint32Array(4);
  const seedOf = (id: string) => (murmur3String128(id, 0x5bd1e995, out), [out[0], out[1]]);
  const [seedHi, seedLo] = seedOf("node-7");
  const next = random32(2);
  const shapes: Record<string, (index: number) => string> = {
    block: () => Array.from({ length: 8 }, () => next().toString(16).padStart(8, "0")).join(""),
    object: (index) => `${next().toString(16).padStart(8, "0")}.${index % 5}.${index}`,
    metadata: (index) => `volume/vm${index}`,
  };
  for (const [shape, makeName] of Object.entries(shapes)) {
    const counts = new Float64Array(64);
    for (let index = 0; index < 64_000; index++) {
      murmur3String128(makeName(index), 0, out);
      counts[Math.floor(unitFromHash(out[0], out[1], seedHi, seedLo) * 64)]++;
    }
    const statistic = chiSquare(counts);
    assert.ok(statistic < chiSquareBound(64, 5), `${shape} names: chi-square ${statistic}`);
  }
});

Deno.test("unitFromHash() avalanches: each input bit flips each output bit half the time", () => {
  const samples = 2000;
  const next = random32(3);
  const flips = new Float64Array(128 * unitBits);
  const outputBits = (unit: number): [number, number] => {
    const k = Math.floor(unit * 2 ** unitBits);
    return [Math.floor(k / 2 ** 32), k >>> 0];
  };
  for (let sample = 0; sample < samples; sample++) {
    const input = [next(), next(), next(), next()];
    const [baseHigh, baseLow] = outputBits(unitFromHash(input[0], input[1], input[2], input[3]));
    for (let bit = 0; bit < 128; bit++) {
      const flipped = input.slice();
      flipped[bit >> 5] ^= 1 << (bit & 31);
      const [high, low] = outputBits(
        unitFromHash(flipped[0], flipped[1], flipped[2], flipped[3]),
      );
      const diffHigh = high ^ baseHigh, diffLow = (low ^ baseLow) >>> 0;
      for (let out = 0; out < 32; out++) flips[bit * unitBits + out] += (diffLow >>> out) & 1;
      for (let out = 32; out < unitBits; out++) {
        flips[bit * unitBits + out] += (diffHigh >>> (out - 32)) & 1;
      }
    }
  }
  // An ideal mix: each of the 6656 cells is 1/2 ± 0.011 (one σ); the worst about ± 0.045.
  let worst = 0;
  for (const count of flips) worst = Math.max(worst, Math.abs(count / samples - 0.5));
  assert.ok(worst < 0.07, `worst flip probability is 1/2 ± ${worst}`);
});

Deno.test("unitFromHash() under seeds one bit apart gives independent values", () => {
  // Member seeds come from hashing ids, but the closest seeds are the hardest case: the
  // pair (u under seed s, u under seed s ^ bit) must fill a 16 × 16 grid evenly.
  const next = random32(4);
  const seedHi = next(), seedLo = next();
  for (const bit of [0, 17, 31, 32, 45, 63]) {
    const otherHi = bit < 32 ? seedHi ^ (1 << bit) : seedHi;
    const otherLo = bit < 32 ? seedLo : seedLo ^ (1 << (bit - 32));
    const grid = new Float64Array(256);
    for (let sample = 0; sample < 51_200; sample++) {
      const nameHi = next(), nameLo = next();
      const first = Math.floor(unitFromHash(nameHi, nameLo, seedHi, seedLo) * 16);
      const second = Math.floor(unitFromHash(nameHi, nameLo, otherHi, otherLo) * 16);
      grid[first * 16 + second]++;
    }
    const statistic = chiSquare(grid);
    assert.ok(statistic < chiSquareBound(256, 5), `seed bit ${bit}: chi-square ${statistic}`);
  }
});
