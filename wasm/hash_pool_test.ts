import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { sha256 } from "@noble/hashes/sha2.js";
import { type HashEngineName, HashPool, hashWorkersMax, toHex } from "./hash_pool.ts";
import { crashBlockBytes } from "./testdata/crashing_hash_worker.ts";
import { seededBytes } from "./testdata/seeded_bytes.ts";

const engines: readonly HashEngineName[] = ["wasm", "native"];
const blockBytes = 4 * 1024 * 1024;

const encoder = new TextEncoder();

/** FIPS 180-2 / NIST CSRC example vectors. */
const publishedVectors: ReadonlyArray<{ name: string; input: () => Uint8Array; hex: string }> = [
  {
    name: "empty string",
    input: () => new Uint8Array(0),
    hex: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  },
  {
    name: '"abc"',
    input: () => encoder.encode("abc"),
    hex: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  },
  {
    name: "448-bit two-block message",
    input: () => encoder.encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    hex: "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  },
  {
    name: 'one million "a"',
    input: () => new Uint8Array(1_000_000).fill(0x61),
    hex: "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
  },
];

// Every engine runs the same contract suite.
for (const engine of engines) {
  Deno.test(`${engine}: hashBlock() and digest() match published SHA-256 vectors`, async () => {
    const pool = new HashPool({ engine });
    try {
      for (const vector of publishedVectors) {
        const { digest } = await pool.hashBlock(vector.input());
        assert.ok(digest !== null);
        assert.equal(toHex(digest), vector.hex, vector.name);
        assert.equal(toHex(await pool.digest(vector.input())), vector.hex, vector.name);
      }
    } finally {
      pool.close();
    }
  });

  Deno.test(`${engine}: hashBlock() agrees with @noble/hashes on data of many sizes`, async () => {
    const pool = new HashPool({ engine });
    try {
      const sizes = [0, 1, 63, 64, 65, 4095, blockBytes, blockBytes - 1];
      for (const [seed, size] of sizes.entries()) {
        const data = seededBytes(size, seed + 1);
        const expected = data.slice();
        const result = await pool.hashBlock(data);
        assert.deepEqual(result.digest, sha256(expected), `size ${size}`);
        assert.deepEqual(result.data, expected, `size ${size}: data comes back intact`);
      }
      // A view that starts at an odd offset inside a larger buffer with other bytes around.
      const backing = seededBytes(300_007, 99);
      const view = backing.subarray(3, 3 + 200_001);
      const expected = view.slice();
      const result = await pool.hashBlock(view);
      assert.deepEqual(result.digest, sha256(expected));
      assert.equal(result.data.byteOffset, 3);
      assert.equal(result.data.buffer.byteLength, 300_007);
      assert.deepEqual(result.data, expected);
    } finally {
      pool.close();
    }
  });

  Deno.test(`${engine}: detectZero skips an all-zero block but hashes a nearly-zero one`, async () => {
    const pool = new HashPool({ engine });
    try {
      const zeros = await pool.hashBlock(new Uint8Array(blockBytes), { detectZero: true });
      assert.equal(zeros.digest, null);
      assert.equal(zeros.data.byteLength, blockBytes);
      assert.ok(zeros.data.every((byte) => byte === 0));

      const nearlyZero = new Uint8Array(blockBytes);
      nearlyZero[blockBytes - 1] = 1;
      const expected = sha256(nearlyZero);
      const result = await pool.hashBlock(nearlyZero, { detectZero: true });
      assert.deepEqual(result.digest, expected);
      assert.equal(result.data[blockBytes - 1], 1);

      // Without detectZero a zero block is hashed like any other.
      const hashed = await pool.hashBlock(new Uint8Array(4096));
      assert.deepEqual(hashed.digest, sha256(new Uint8Array(4096)));
    } finally {
      pool.close();
    }
  });

  Deno.test(`${engine}: 200 concurrent jobs each get their own bytes and digest back`, async () => {
    // Goal: results are matched to their inputs under load. Method: 200 jobs of varied
    // sizes (some all-zero) in flight at once; each result must carry its own bytes.
    const pool = new HashPool({ engine });
    try {
      const inputs = Array.from({ length: 200 }, (_, index) => {
        const size = (index * 7919) % 300_000;
        return index % 10 === 0 ? new Uint8Array(size) : seededBytes(size, index + 1);
      });
      const copies = inputs.map((data) => data.slice());
      const results = await Promise.all(
        inputs.map((data) => pool.hashBlock(data, { detectZero: true })),
      );
      for (const [index, result] of results.entries()) {
        const copy = copies[index];
        assert.deepEqual(result.data, copy, `job ${index}: its own bytes`);
        const zero = copy.every((byte) => byte === 0);
        assert.deepEqual(result.digest, zero ? null : sha256(copy), `job ${index}`);
      }
    } finally {
      pool.close();
    }
  });

  Deno.test(`${engine}: digest() leaves the caller's bytes usable`, async () => {
    const pool = new HashPool({ engine });
    try {
      const data = seededBytes(100_000, 7);
      const digest = await pool.digest(data.subarray(10));
      assert.deepEqual(digest, sha256(data.subarray(10)));
      assert.equal(data.byteLength, 100_000);
      assert.deepEqual(await pool.digest(new Uint8Array(64)), sha256(new Uint8Array(64)));
    } finally {
      pool.close();
    }
  });

  Deno.test(`${engine}: close() rejects pending jobs, is idempotent, and refuses new jobs`, async () => {
    const pool = new HashPool({ engine });
    const pending = Array.from({ length: 8 }, (_, i) => pool.hashBlock(seededBytes(blockBytes, i)));
    pool.close();
    pool.close();
    const closedBeforeFinish = /Cannot hash block: hash pool was closed before the job finished/;
    await Promise.all(pending.map((job) => assert.rejects(job, closedBeforeFinish)));
    await assert.rejects(
      pool.hashBlock(new Uint8Array(8)),
      /Cannot hash block: hash pool is closed/,
    );
    await assert.rejects(pool.digest(new Uint8Array(8)), /Cannot hash block: hash pool is closed/);
  });

  Deno.test(`${engine}: hashBlock() refuses what is not a live Uint8Array`, async () => {
    const pool = new HashPool({ engine });
    try {
      const notBytes = new DataView(new ArrayBuffer(8)) as unknown as Uint8Array;
      await assert.rejects(pool.hashBlock(notBytes), TypeError);
      await assert.rejects(pool.digest(notBytes), TypeError);
      const detached = new Uint8Array(8);
      structuredClone(detached.buffer, { transfer: [detached.buffer] });
      await assert.rejects(pool.hashBlock(detached), /detached/);
    } finally {
      pool.close();
    }
  });
}

Deno.test("wasm: hashBlock() transfers the buffer and hands it back", async () => {
  const pool = new HashPool({ engine: "wasm", workers: 1 });
  try {
    const data = seededBytes(blockBytes, 5);
    const expected = data.slice();
    const job = pool.hashBlock(data);
    // At the end of the turn an idle worker took it: the buffer left without a copy.
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    assert.equal(data.buffer.detached, true);
    assert.equal(data.byteLength, 0);
    const result = await job;
    assert.deepEqual(result.data, expected);
    assert.deepEqual(result.digest, sha256(expected));
  } finally {
    pool.close();
  }
});

Deno.test("wasm: a second in-flight job on a view of the same buffer is refused", async () => {
  const pool = new HashPool({ engine: "wasm", workers: 2 });
  try {
    const backing = seededBytes(8192, 3);
    const low = backing.subarray(0, 4096);
    const high = backing.subarray(4096);
    const first = pool.hashBlock(low);
    await assert.rejects(pool.hashBlock(high), /detached/);
    const result = await first;
    assert.equal(result.data.buffer.byteLength, 8192);
  } finally {
    pool.close();
  }
});

Deno.test("wasm: an explicit workerUrl to hash_worker.ts serves jobs", async () => {
  const workerUrl = new URL("./hash_worker.ts", import.meta.url);
  for (const url of [workerUrl, workerUrl.href]) {
    const pool = new HashPool({ workerUrl: url, workers: 2 });
    try {
      const data = seededBytes(70_000, 11);
      const { digest } = await pool.hashBlock(data.slice());
      assert.deepEqual(digest, sha256(data));
    } finally {
      pool.close();
    }
  }
});

/** Runs a command to completion and returns its stdout; a nonzero exit fails the test. */
async function run(args: string[], cwd?: string): Promise<string> {
  const command = new Deno.Command(args[0], { args: args.slice(1), cwd, stdin: "null" });
  const { code, stdout, stderr } = await command.output();
  const decoder = new TextDecoder();
  assert.equal(code, 0, `${args.join(" ")} failed: ${decoder.decode(stderr)}`);
  return decoder.decode(stdout);
}

Deno.test("wasm: a deno bundle output starts itself as the hash worker", async () => {
  // Goal: the default worker URL works where hash_worker.ts is not beside the pool.
  // Method: bundle a stand-in for main.ts into one file in an empty directory, run it
  // there, and expect the SHA-256 of "abc" computed by a wasm worker.
  const entry = fileURLToPath(new URL("./testdata/bundle_entry.ts", import.meta.url));
  const directory = await Deno.makeTempDir({ prefix: "atoll_bundle_" });
  try {
    const bundle = `${directory}/atoll.js`;
    await run([Deno.execPath(), "bundle", "--quiet", "--output", bundle, entry]);
    const printed = await run([Deno.execPath(), "run", "--allow-all", bundle], directory);
    assert.equal(printed.trim(), publishedVectors[1].hex);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("wasm: a crashed worker rejects only the jobs it held and is replaced", async () => {
  // Goal: a worker crash neither hangs nor poisons other jobs. Method: one worker that
  // crashes on a 13-byte block; a job before it, the crashing one alone, then jobs after
  // it and a batch that holds it again (every job of that request is lost with it).
  const workerUrl = new URL("./testdata/crashing_hash_worker.ts", import.meta.url);
  const pool = new HashPool({ workerUrl, workers: 1 });
  const expectCrash = async (job: Promise<unknown>) => {
    await assert.rejects(job, /Cannot hash block: hash worker crashed/);
  };
  const expectDigest = async (size: number) => {
    const { digest } = await pool.hashBlock(seededBytes(size, size));
    assert.deepEqual(digest, sha256(seededBytes(size, size)));
  };
  try {
    await expectDigest(100);
    await expectCrash(pool.hashBlock(seededBytes(crashBlockBytes, 1)));
    await expectDigest(200);
    // One worker busy with the first job (sent at the end of its turn): the next three,
    // submitted in a later turn, wait and go to the worker together.
    const first = pool.hashBlock(seededBytes(300, 300));
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    const batch = [crashBlockBytes, 400, 500].map((size) => pool.hashBlock(seededBytes(size, 1)));
    const crashed = Promise.all(batch.map(expectCrash));
    assert.deepEqual((await first).digest, sha256(seededBytes(300, 300)));
    await crashed;
    await expectDigest(600);
  } finally {
    pool.close();
  }
});

Deno.test("wasm: blocks queued together are hashed together and each gets its own digest", async () => {
  // Goal: batches (hash_worker.ts: the four-lane core for blocks of one length, hash-wasm
  // for a block alone, zero blocks skipped) answer every job with its own block's digest.
  const pool = new HashPool({ workers: 2 });
  try {
    const sizes = [blockBytes, blockBytes, 5000, blockBytes, 5000, 0, blockBytes, blockBytes, 77];
    const blocks = sizes.map((size, i) => seededBytes(size, i + 1));
    blocks[3].fill(0); // a zero block in the middle of a batch
    const results = await Promise.all(
      blocks.map((block) => pool.hashBlock(block.slice(), { detectZero: true })),
    );
    for (const [i, { data, digest }] of results.entries()) {
      assert.deepEqual(data, blocks[i], `job ${i} gets its bytes back`);
      const zero = blocks[i].every((byte) => byte === 0);
      assert.deepEqual(digest, zero ? null : sha256(blocks[i]), `job ${i}`);
    }
  } finally {
    pool.close();
  }
});

Deno.test("HashPool options: defaults and refusals", () => {
  const wasm = new HashPool();
  assert.equal(wasm.engine, "wasm");
  assert.equal(wasm.workers, Math.max(1, navigator.hardwareConcurrency));
  wasm.close();
  const native = new HashPool({ engine: "native", workers: 4 });
  assert.equal(native.workers, 0);
  native.close();
  for (const workers of [0, -1, 1.5, Number.NaN, hashWorkersMax + 1]) {
    assert.throws(() => new HashPool({ workers }), RangeError);
  }
  assert.throws(() => new HashPool({ engine: "md5" as HashEngineName }), TypeError);
});

Deno.test("toHex() writes two lowercase digits per byte", () => {
  assert.equal(toHex(new Uint8Array(0)), "");
  assert.equal(toHex(new Uint8Array([0, 1, 0x0f, 0xab, 0xff])), "00010fabff");
});
