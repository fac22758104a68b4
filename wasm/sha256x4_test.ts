import assert from "node:assert/strict";
import { sha256 } from "@noble/hashes/sha2.js";
import { sha256x4Base64 } from "./_sha256x4_module.ts";
import { buildSha256x4, moduleSource } from "./build_sha256x4.ts";
import { Sha256x4 } from "./sha256x4.ts";
import { toHex } from "./to_hex.ts";
import { seededBytes } from "./testdata/seeded_bytes.ts";

/** Checks one call of `count` messages of `length` bytes against @noble/hashes. */
function check(core: Sha256x4, length: number, count: number, seed: number): void {
  const messages = Array.from({ length: count }, (_, i) => seededBytes(length, seed * 8 + i + 1));
  const got = core.hash(messages).map(toHex);
  const want = messages.map((message) => toHex(sha256(message)));
  assert.deepEqual(got, want, `${count} messages of ${length} bytes`);
}

Deno.test("four-lane SHA-256 matches @noble/hashes: published vectors", async () => {
  const core = await Sha256x4.create();
  const abc = new TextEncoder().encode("abc");
  assert.equal(
    toHex(core.hash([abc])[0]),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  const two = new TextEncoder().encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
  assert.deepEqual(core.hash([two, two]).map(toHex), [
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  ]);
  assert.equal(
    toHex(core.hash([new Uint8Array(0)])[0]),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("four-lane SHA-256 matches @noble/hashes: every padding edge, 1 to 4 lanes", async () => {
  const core = await Sha256x4.create();
  // Lengths around each chunk boundary, where padding takes one chunk or two.
  for (let length = 0; length <= 200; length++) check(core, length, 1 + length % 4, length);
  for (const length of [447, 448, 511, 512, 513, 4095, 4096, 65_535, 100_003]) {
    for (let count = 1; count <= 4; count++) check(core, length, count, length + count);
  }
});

Deno.test("four-lane SHA-256 matches @noble/hashes on 4 MiB blocks, after shorter ones", async () => {
  const core = await Sha256x4.create();
  check(core, 1000, 4, 1);
  check(core, 4 * 1024 * 1024, 4, 2); // the memory grows
  check(core, 4 * 1024 * 1024 + 1, 3, 3);
  check(core, 77, 2, 4); // shorter again: stale bytes past the padding change nothing
});

Deno.test("four-lane SHA-256 refuses a call it cannot answer", async () => {
  const core = await Sha256x4.create();
  assert.throws(() => core.hash([]), RangeError);
  assert.throws(() => core.hash(Array.from({ length: 5 }, () => new Uint8Array(1))), RangeError);
  assert.throws(() => core.hash([new Uint8Array(1), new Uint8Array(2)]), /different lengths/);
});

Deno.test("the four-lane core's bytes are what its generator builds", async () => {
  const built = await buildSha256x4();
  const source = await Deno.readTextFile(new URL("./_sha256x4_module.ts", import.meta.url));
  assert.equal(
    source,
    moduleSource(built),
    "wasm/_sha256x4_module.ts is stale: run deno run -A wasm/build_sha256x4.ts",
  );
  assert.ok(sha256x4Base64.length > 1000);
});
