/**
 * The text of the four-lane SHA-256 core (sha256x4.ts): one WebAssembly
 * function that runs the SHA-256 compression (FIPS 180-4, section 6.2.2) on
 * four messages at once, one per 32-bit lane of 128-bit SIMD values. hash-wasm
 * hashes one message at a time with scalar code; the same instructions on four
 * lanes cost about as much as on one, so four blocks of an upload hash in
 * about the time hash-wasm takes for one and a half (bench/sha256_bench.ts).
 *
 * `compress(p0, p1, p2, p3, chunks, state)` reads `chunks` 64-byte chunks from
 * each of the four addresses (already padded by the caller) and updates the
 * eight state words at `state`, stored as eight 16-byte values whose lane i is
 * message i's word. The 64 rounds and the message schedule are unrolled here;
 * each round names the working variables by rotating which local holds which,
 * so no value moves. `deno run -A wasm/build_sha256x4.ts` turns this text into
 * the bytes `_sha256x4_module.ts` holds (a test checks that they match).
 *
 * @module
 */

/** The SHA-256 round constants (FIPS 180-4, 4.2.2). */
const roundConstants = [
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
];

const variables = ["$a", "$b", "$c", "$d", "$e", "$f", "$g", "$h"];
const get = (local: string) => `(local.get ${local})`;
const add = (x: string, y: string) => `(i32x4.add ${x} ${y})`;
const xor = (x: string, y: string) => `(v128.xor ${x} ${y})`;
const shr = (x: string, n: number) => `(i32x4.shr_u ${x} (i32.const ${n}))`;
/** Rotation right by `n` of each lane (WebAssembly SIMD has no rotate). */
const rotr = (x: string, n: number) =>
  `(v128.or ${shr(x, n)} (i32x4.shl ${x} (i32.const ${32 - n})))`;
/** Reverses the bytes of each lane: message words are big endian. */
const byteSwap = (x: string) => `(i8x16.shuffle 3 2 1 0 7 6 5 4 11 10 9 8 15 14 13 12 ${x} ${x})`;
/** The local holding schedule word `t` (a ring of sixteen). */
const word = (t: number) => `$w${t % 16}`;

/** Word `t` of the schedule: loaded for t < 16, computed from earlier words after. */
function scheduleWord(t: number): string[] {
  if (t < 16) {
    let lanes = `(i32x4.splat (i32.load offset=${t * 4} ${get("$p0")}))`;
    for (let lane = 1; lane < 4; lane++) {
      lanes = `(i32x4.replace_lane ${lane} ${lanes} (i32.load offset=${t * 4} ${
        get(`$p${lane}`)
      }))`;
    }
    return [`(local.set $x ${lanes})`, `(local.set ${word(t)} ${byteSwap(get("$x"))})`];
  }
  const w2 = get(word(t - 2)), w15 = get(word(t - 15));
  const sigma1 = xor(xor(rotr(w2, 17), rotr(w2, 19)), shr(w2, 10));
  const sigma0 = xor(xor(rotr(w15, 7), rotr(w15, 18)), shr(w15, 3));
  return [
    `(local.set ${word(t)} ${add(add(sigma1, get(word(t - 7))), add(sigma0, get(word(t - 16))))})`,
  ];
}

/** Round `t`: the variables a..h are the locals rotated by t. */
function round(t: number): string[] {
  const [a, b, c, d, e, f, g, h] = variables.map((_, i) => variables[(i - t + 64) % 8]);
  const k = roundConstants[t];
  const bigSigma1 = xor(xor(rotr(get(e), 6), rotr(get(e), 11)), rotr(get(e), 25));
  const choose = `(v128.bitselect ${get(f)} ${get(g)} ${get(e)})`;
  const bigSigma0 = xor(xor(rotr(get(a), 2), rotr(get(a), 13)), rotr(get(a), 22));
  // Maj(a, b, c): where a and b agree, a; where they differ, c.
  const majority = `(v128.bitselect ${get(c)} ${get(a)} ${xor(get(a), get(b))})`;
  return [
    `(local.set $t1 ${
      add(
        add(add(get(h), bigSigma1), add(choose, `(v128.const i32x4 ${k} ${k} ${k} ${k})`)),
        get(word(t)),
      )
    })`,
    `(local.set $t2 ${add(bigSigma0, majority)})`,
    // The new e takes d's local, the new a h's: next round names them so.
    `(local.set ${d} ${add(get(d), get("$t1"))})`,
    `(local.set ${h} ${add(get("$t1"), get("$t2"))})`,
  ];
}

/** The module's text: memory (exported, grown by the caller) and `compress`. */
export function sha256x4Wat(): string {
  const body: string[] = [];
  for (const [i, v] of variables.entries()) {
    body.push(`(local.set ${v} (v128.load offset=${i * 16} ${get("$state")}))`);
  }
  body.push("(block $done (loop $chunk");
  body.push(`(br_if $done (i32.eqz ${get("$chunks")}))`);
  for (let t = 0; t < 64; t++) body.push(...scheduleWord(t), ...round(t));
  // After 64 rounds (a multiple of 8) every variable is back in its own local.
  for (const [i, v] of variables.entries()) {
    body.push(`(local.set ${v} ${add(get(v), `(v128.load offset=${i * 16} ${get("$state")})`)})`);
    body.push(`(v128.store offset=${i * 16} ${get("$state")} ${get(v)})`);
  }
  for (let lane = 0; lane < 4; lane++) {
    body.push(`(local.set $p${lane} (i32.add ${get(`$p${lane}`)} (i32.const 64)))`);
  }
  body.push(`(local.set $chunks (i32.sub ${get("$chunks")} (i32.const 1)))`);
  body.push("(br $chunk)))");
  const locals = [
    ...variables,
    "$t1",
    "$t2",
    "$x",
    ...Array.from({ length: 16 }, (_, i) => `$w${i}`),
  ]
    .map((name) => `(local ${name} v128)`).join(" ");
  return [
    '(module (memory (export "memory") 1)',
    '(func (export "compress") (param $p0 i32) (param $p1 i32) (param $p2 i32) (param $p3 i32)',
    "(param $chunks i32) (param $state i32)",
    locals,
    ...body,
    "))",
  ].join("\n");
}
