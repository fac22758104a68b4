/** Test and bench helpers for placement: a seeded PRNG and realistic names. */

/** mulberry32: a small seeded 32-bit PRNG (tests only; not for keys). */
export function random32(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** `count` distinct names: 64-hex block names, `UID.GEN.INDEX` objects and metadata keys. */

/** Distinct names of every kind placement sees. */
export function generateNames(count: number, seed: number): string[] {
  const next = random32(seed);
  const hex32 = () => next().toString(16).padStart(8, "0");
  return Array.from({ length: count }, (_, index) => {
    if (index % 4 === 3) return `${hex32()}${hex32()}.${index % 7}.${index}`;
    if (index % 8 === 5) return `volume/vm${index}`;
    return Array.from({ length: 8 }, hex32).join("");
  });
}
