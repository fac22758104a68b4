/**
 * Hashes behind placement: a 128-bit hash of a string (MurmurHash3_x86_128 of its
 * UTF-16LE code units) and a keyed 64-bit mix that turns (name hash, member seed) into
 * a uniform double in (0, 1).
 *
 * Both are non-cryptographic and use 32-bit integer arithmetic only (`Math.imul`,
 * shifts, xor), so every JavaScript engine on every platform computes the same bits.
 * They are part of the placement format: changing a constant here moves every
 * replica in a live cluster.
 *
 * @module
 */

import { assert } from "../../core/assert.ts";

/** Bits of uniform randomness in a {@linkcode unitFromHash} result (a double's mantissa). */
export const unitBits = 52;
assert(0x100000 === 2 ** (unitBits - 32) && 0x10000000000000 === 2 ** unitBits);

const c1 = 0x239b961b;
const c2 = 0xab0e9789;
const c3 = 0x38b34ae5;
const c4 = 0xa1e38b93;

/** Round-key tweaks of the keyed mix (fractional digits of the golden ratio and of π). */
const roundTweak3 = 0x9e3779b9;
const roundTweak4 = 0x243f6a88;

function rotl32(x: number, bits: number): number {
  return (x << bits) | (x >>> (32 - bits));
}

/**
 * MurmurHash3's 32-bit finalizer: every input bit flips each output bit with p ≈ 1/2.
 * Returns a signed 32-bit integer, which V8 keeps unboxed on the hot path.
 */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** The 32-bit little-endian word of code units `at` and `at + 1` (0 past the end). */
function word(text: string, at: number): number {
  const low = at < text.length ? text.charCodeAt(at) : 0;
  const high = at + 1 < text.length ? text.charCodeAt(at + 1) : 0;
  return low | (high << 16);
}

/** One input word's scramble: multiply, rotate, multiply. */
function scramble(k: number, first: number, rotation: number, second: number): number {
  return Math.imul(rotl32(Math.imul(k, first), rotation), second);
}

/**
 * MurmurHash3_x86_128 of `text` encoded as UTF-16LE (two bytes per code unit, so an
 * ASCII name hashes as its characters interleaved with zero bytes), written as four
 * unsigned 32-bit words h1..h4 into `out`. Nothing is allocated, so it suits the hot path.
 *
 * @example
 * ```ts
 * const out = new Uint32Array(4);
 * murmur3String128("volume/vm1", 0, out); // out[0] === 0x7e6f5633
 * ```
 */
export function murmur3String128(text: string, seed: number, out: Uint32Array): void {
  assert(out.length >= 4, "murmur3String128() needs four output words");
  const units = text.length;
  const blockUnits = units - (units & 7);
  let h1 = seed | 0, h2 = seed | 0, h3 = seed | 0, h4 = seed | 0;
  for (let at = 0; at < blockUnits; at += 8) {
    h1 ^= scramble(word(text, at), c1, 15, c2);
    h1 = (Math.imul(rotl32(h1, 19) + h2, 5) + 0x561ccd1b) | 0;
    h2 ^= scramble(word(text, at + 2), c2, 16, c3);
    h2 = (Math.imul(rotl32(h2, 17) + h3, 5) + 0x0bcaa747) | 0;
    h3 ^= scramble(word(text, at + 4), c3, 17, c4);
    h3 = (Math.imul(rotl32(h3, 15) + h4, 5) + 0x96cd1c35) | 0;
    h4 ^= scramble(word(text, at + 6), c4, 18, c1);
    h4 = (Math.imul(rotl32(h4, 13) + h1, 5) + 0x32ac3b17) | 0;
  }
  // The tail: 0 to 7 code units, absorbed as the reference's switch on the byte count does.
  const tailUnits = units - blockUnits;
  if (tailUnits >= 7) h4 ^= scramble(word(text, blockUnits + 6), c4, 18, c1);
  if (tailUnits >= 5) h3 ^= scramble(word(text, blockUnits + 4), c3, 17, c4);
  if (tailUnits >= 3) h2 ^= scramble(word(text, blockUnits + 2), c2, 16, c3);
  if (tailUnits >= 1) h1 ^= scramble(word(text, blockUnits), c1, 15, c2);

  const lengthBytes = 2 * units;
  h1 ^= lengthBytes, h2 ^= lengthBytes, h3 ^= lengthBytes, h4 ^= lengthBytes;
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0, h3 = (h3 + h1) | 0, h4 = (h4 + h1) | 0;
  h1 = fmix32(h1), h2 = fmix32(h2), h3 = fmix32(h3), h4 = fmix32(h4);
  h1 = (h1 + h2 + h3 + h4) | 0;
  out[0] = h1;
  out[1] = h2 + h1;
  out[2] = h3 + h1;
  out[3] = h4 + h1;
}

/**
 * Maps a 64-bit name hash (`nameHi`, `nameLo`) under a 64-bit member seed (`seedHi`,
 * `seedLo`) to a double in the open interval (0, 1), with {@linkcode unitBits} bits of
 * uniform randomness: `(k + 1/2) / 2^52`, so never exactly 0 or 1.
 *
 * The mix is a four-round Feistel network on the two 32-bit halves with `fmix32` as the
 * round function and the seed as round keys: a different permutation of the 64-bit name
 * hash for every member, so the values of one name on two members behave as independent.
 *
 * @example
 * ```ts
 * const u = unitFromHash(0x7e6f5633, 0xaf216f4e, 0x1234, 0x5678);
 * // 0 < u && u < 1
 * ```
 */
export function unitFromHash(
  nameHi: number,
  nameLo: number,
  seedHi: number,
  seedLo: number,
): number {
  let left = nameHi | 0;
  let right = nameLo | 0;
  right ^= fmix32(left ^ seedHi);
  left ^= fmix32(right ^ seedLo);
  right ^= fmix32(left ^ seedHi ^ roundTweak3);
  left ^= fmix32(right ^ seedLo ^ roundTweak4);
  // 32 bits of `left` and the top 20 of `right`, as literals: V8 does not fold `2 ** n`.
  return ((left >>> 0) * 0x100000 + (right >>> 12) + 0.5) / 0x10000000000000;
}
