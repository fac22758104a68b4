/**
 * Goal: the single-node product of DESIGN.md holds end to end against a real node
 * process on loopback. Method: upload a generated ~300 MiB image with repeated
 * and zero blocks using curl, check the dedup counts against what is unique,
 * download and clone it, snapshot, write, clone the snapshot, delete, kill -9 the
 * node, restart it on the same data directory and check every byte again.
 */
import assert from "node:assert/strict";
import { bytesSha256, fileSha256, patternBytes, run, streamSha256 } from "./_files.ts";
import { removeData, startNode, type TestNode } from "./_node.ts";

const B = 4 * 1024 * 1024;
const blockCount = 72;
const tailBytes = 1_234_432; // whole sectors, as every image

/**
 * Writes the image: block i is zero when i % 6 == 2, else the pattern of seed
 * i % 17 (so most seeds repeat), then a short tail. Returns the expected counts.
 */
async function writeImage(path: string) {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const seen = new Set<number>();
  let zeroBlocks = 0;
  for (let i = 0; i < blockCount; i++) {
    if (i % 6 === 2) {
      zeroBlocks++;
      await file.write(new Uint8Array(B));
      continue;
    }
    seen.add(i % 17);
    await file.write(patternBytes(B, i % 17));
  }
  await file.write(patternBytes(tailBytes, 999));
  file.close();
  return {
    size: blockCount * B + tailBytes,
    blocks: blockCount + 1,
    zeroBlocks,
    newBlocks: seen.size + 1,
    newBytes: seen.size * B + tailBytes,
  };
}

async function json(node: TestNode, path: string, init?: RequestInit) {
  const response = await node.fetch(path, init);
  const body = await response.json();
  return { status: response.status, body };
}

async function dataSha(node: TestNode, path: string): Promise<string> {
  const response = await node.fetch(path);
  assert.equal(response.status, 200, path);
  return await streamSha256(response.body!);
}

Deno.test("a node dedups uploads, clones, snapshots, and keeps everything across kill -9", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-e2e-" });
  const imagePath = `${dir}/image.raw`;
  const expected = await writeImage(imagePath);
  const imageSha = await fileSha256(imagePath);
  let node = await startNode();
  try {
    const upload = JSON.parse(
      await run("curl", ["-sS", "-T", imagePath, `${node.url}/v1/images/debian`]),
    );
    assert.equal(upload.name, "debian");
    assert.equal(upload.size, expected.size);
    assert.equal(upload.blockSize, B);
    assert.equal(upload.blocks, expected.blocks);
    assert.equal(upload.zeroBlocks, expected.zeroBlocks);
    assert.equal(upload.newBlocks, expected.newBlocks);
    assert.equal(upload.newBytes, expected.newBytes);

    const again = JSON.parse(
      await run("curl", ["-sS", "-T", imagePath, `${node.url}/v1/images/debian-copy`]),
    );
    assert.deepEqual([again.newBlocks, again.newBytes], [0, 0], "same bytes store nothing new");

    assert.equal(await dataSha(node, "/v1/images/debian"), imageSha);
    const created = await json(node, "/v1/volumes", {
      method: "POST",
      body: JSON.stringify({ name: "vm1", image: "debian" }),
    });
    assert.equal(created.status, 201);
    assert.equal(created.body.size, expected.size);
    assert.equal(await dataSha(node, "/v1/volumes/vm1/data"), imageSha);

    // Snapshot, then write across a block boundary through the core's write path.
    const snap = await json(node, "/v1/volumes/vm1/snapshots", {
      method: "POST",
      body: JSON.stringify({ name: "s1" }),
    });
    assert.equal(snap.status, 201);
    const patch = patternBytes(3 * 1024 * 1024, 4242);
    const patchAt = 5 * B - 1024 * 1024;
    const wrote = await node.fetch(`/v1/volumes/vm1/data?offset=${patchAt}`, {
      method: "PATCH",
      body: patch,
    });
    assert.equal(wrote.status, 200, await wrote.text());
    const clone = await json(node, "/v1/volumes", {
      method: "POST",
      body: JSON.stringify({ name: "vm2", snapshot: "vm1@s1" }),
    });
    assert.equal(clone.status, 201);

    const patched = await Deno.readFile(imagePath);
    patched.set(patch, patchAt);
    const patchedSha = bytesSha256(patched);
    assert.equal(await dataSha(node, "/v1/volumes/vm1/data"), patchedSha);
    assert.equal(await dataSha(node, "/v1/volumes/vm2/data"), imageSha);
    assert.equal(await dataSha(node, "/v1/volumes/vm1/snapshots/s1/data"), imageSha);

    // Deleting the images keeps the volumes whole, before and after GC.
    assert.equal((await node.fetch("/v1/images/debian", { method: "DELETE" })).status, 204);
    assert.equal((await node.fetch("/v1/images/debian-copy", { method: "DELETE" })).status, 204);
    const gc = await json(node, "/v1/gc", { method: "POST" });
    assert.equal(gc.body.deletedBlocks, 0, "every block is still used by vm1, vm2 or s1");
    assert.equal(await dataSha(node, "/v1/volumes/vm1/data"), patchedSha);

    await node.kill9();
    node = await startNode({ data: node.data });
    assert.deepEqual((await json(node, "/v1/images")).body, []);
    const volumes = (await json(node, "/v1/volumes")).body.map((v: { name: string }) => v.name);
    assert.deepEqual(volumes, ["vm1", "vm2"]);
    assert.equal(await dataSha(node, "/v1/volumes/vm1/data"), patchedSha);
    assert.equal(await dataSha(node, "/v1/volumes/vm2/data"), imageSha);
    assert.equal(await dataSha(node, "/v1/volumes/vm1/snapshots/s1/data"), imageSha);

    // Deleting everything gives every block back.
    assert.equal((await node.fetch("/v1/volumes/vm1", { method: "DELETE" })).status, 409);
    assert.equal(
      (await node.fetch("/v1/volumes/vm1?cascade=true", { method: "DELETE" })).status,
      204,
    );
    assert.equal(
      await dataSha(node, "/v1/volumes/vm2/data"),
      imageSha,
      "clone outlives its source",
    );
    assert.equal((await node.fetch("/v1/volumes/vm2", { method: "DELETE" })).status, 204);
    const emptied = await json(node, "/v1/gc", { method: "POST" });
    assert.deepEqual([emptied.body.liveBlocks, emptied.body.liveObjects], [0, 0]);
  } finally {
    await node.stop();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
});
