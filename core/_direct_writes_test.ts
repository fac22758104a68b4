import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DirectWrites } from "./_direct_writes.ts";
import { LocalEngine } from "./local_engine.ts";
import { directWrites } from "../metrics/mod.ts";

const MiB = 1024 * 1024;

/** `atoll_disk_direct_writes_total{kind="block"}` by result, as the node exports it. */
async function blockCounts(): Promise<{ direct: number; failed: number }> {
  const { values } = await directWrites.get();
  const of = (result: string) =>
    values.find((v) => v.labels.kind === "block" && v.labels.result === result)?.value ?? 0;
  return { direct: of("direct"), failed: of("failed") };
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return bytes;
}

Deno.test("direct writes: the aligned prefix goes around the page cache, the rest is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const direct = DirectWrites.probe(dir);
    assert.ok(direct !== null, `the data disk under ${dir} takes O_DIRECT writes`);
    const before = await blockCounts();
    const path = `${dir}/block`;
    await Deno.writeFile(path, new Uint8Array());
    const data = pattern(4 * MiB + 1000, 1);
    assert.equal(direct.writePrefix(path, data, 0, "block"), 4 * MiB);
    assert.deepEqual(await blockCounts(), { direct: before.direct + 1, failed: before.failed });
    const written = await Deno.readFile(path);
    assert.equal(written.length, 4 * MiB, "the tail is the caller's to write");
    assert.deepEqual(written, data.subarray(0, 4 * MiB));

    // Not aligned, or too short to be worth a wait for the disk: nothing written.
    assert.equal(direct.writePrefix(path, data, 512, "block"), 0);
    assert.equal(direct.writePrefix(path, data.subarray(0, 64 * 1024), 0, "block"), 0);
    // A file that is not there: counted as failed, nothing written (the caller writes it).
    assert.equal(direct.writePrefix(`${dir}/missing`, data, 0, "block"), 0);
    assert.deepEqual(await blockCounts(), { direct: before.direct + 1, failed: before.failed + 1 });
    assert.deepEqual(await Deno.readFile(path), data.subarray(0, 4 * MiB));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Bytes of `path` in the page cache (util-linux's fincore). */
async function cachedBytes(path: string): Promise<number> {
  const out = await new Deno.Command("fincore", { args: ["-b", "-n", "-o", "RES", path] }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/**
 * Puts blocks (whole 4 MiB, with a tail, small), flushes, reopens, reads them
 * back; returns the page-cache bytes each block file held after the flush.
 */
async function roundTrip(dir: string): Promise<number[]> {
  const engine = await LocalEngine.open({ dir });
  const blocks = [pattern(4 * MiB, 2), pattern(3 * MiB + 777, 3), pattern(5000, 4)];
  const hashes = blocks.map((block) => createHash("sha256").update(block).digest("hex"));
  for (const [i, block] of blocks.entries()) {
    assert.equal(await engine.putBlock(hashes[i], block), true);
  }
  await engine.flush();
  await engine.close();
  const paths = hashes.map((hash) => `${dir}/blocks/${hash.slice(0, 2)}/${hash}`);
  const cached = await Promise.all(paths.map(cachedBytes));
  const again = await LocalEngine.open({ dir });
  try {
    for (const [i, block] of blocks.entries()) {
      const into = new Uint8Array(block.length);
      await again.readBlock(hashes[i], { offset: 0, length: block.length }, into);
      assert.deepEqual(into, block, `block ${i} reads back whole`);
    }
  } finally {
    await again.close();
  }
  return cached;
}

Deno.test("blocks written around the page cache read back whole after a reopen", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cached = await roundTrip(`${dir}/data`);
    // The aligned bytes never entered the page cache: at most the buffered tail's page
    // (the small block is written buffered, whole).
    assert.equal(cached[0], 0, "a whole 4 MiB block is not cached");
    assert.ok(cached[1] <= 4096, `a block's tail only is cached: ${cached[1]} bytes`);
    assert.ok(cached[2] > 0, "a small block goes through the page cache");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("blocks on a file system that may refuse O_DIRECT (tmpfs) read back whole", async () => {
  const dir = await Deno.makeTempDir();
  const mounted = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=64m", "tmpfs", dir],
  }).output();
  assert.equal(mounted.code, 0, "mount tmpfs (the test runs as root)");
  try {
    await roundTrip(`${dir}/data`);
  } finally {
    await new Deno.Command("umount", { args: [dir] }).output();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("direct writes off the event loop: many at once land whole, each in its own file", async () => {
  // More writes at once than staging buffers (4): later ones wait for a free buffer.
  const dir = await Deno.makeTempDir();
  try {
    const direct = DirectWrites.probe(dir);
    assert.ok(direct !== null, `the data disk under ${dir} takes O_DIRECT writes`);
    const before = await blockCounts();
    const datas = Array.from({ length: 12 }, (_, i) => pattern(4 * MiB + 512 * i, 10 + i));
    const paths = datas.map((_, i) => `${dir}/block${i}`);
    for (const path of paths) await Deno.writeFile(path, new Uint8Array());
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const wrote = await Promise.all(
      datas.map((data, i) => direct.writePrefixAsync(paths[i], data, 0, "block")),
    );
    clearInterval(timer);
    assert.deepEqual(wrote, datas.map((data) => data.length - data.length % 4096));
    assert.ok(ticks > 0, "the event loop ran timers while the writes were under way");
    for (const [i, data] of datas.entries()) {
      assert.deepEqual(await Deno.readFile(paths[i]), data.subarray(0, wrote[i]), `block ${i}`);
    }
    assert.deepEqual(await blockCounts(), { direct: before.direct + 12, failed: before.failed });
    // The same refusals as on the event loop: nothing written, the caller writes it.
    assert.equal(await direct.writePrefixAsync(paths[0], datas[0], 512, "block"), 0);
    assert.equal(await direct.writePrefixAsync(`${dir}/missing`, datas[0], 0, "block"), 0);
    assert.deepEqual(await blockCounts(), {
      direct: before.direct + 12,
      failed: before.failed + 1,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
