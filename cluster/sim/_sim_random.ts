/**
 * The simulator's seeded pseudo-random numbers: sfc32 (Chris Doty-Humphrey's small fast
 * counting generator: 128 bits of state, passes PractRand to 2^40 bytes), seeded through
 * splitmix32 so that nearby seeds give unrelated streams.
 *
 * @module
 */

/** Scrambles `x` (splitmix32's finalizer): nearby inputs give unrelated outputs. */
export function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** A seeded stream of numbers in [0, 1); the same seed gives the same stream. */
export class Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** A stream for `seed`, optionally one of several independent ones (`stream`). */
  constructor(seed: number, stream = 0) {
    const base = mix32(mix32(seed >>> 0) ^ Math.imul(stream + 1, 0x632be5ab));
    this.#a = mix32(base);
    this.#b = mix32(base ^ 0x1b873593);
    this.#c = mix32(base ^ 0x7f4a7c15);
    this.#d = 1;
    for (let i = 0; i < 12; i += 1) this.next();
  }

  /** The next number, uniform in [0, 1). */
  next(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return (t >>> 0) / 4294967296;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A uniform number in [min, max). */
  between(min: number, max: number): number {
    return min + this.next() * (max - min);
  }
}
