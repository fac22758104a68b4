/**
 * Goal: a data read that fails after the status line was sent can never pass
 * for a whole body: the response carries its Content-Length and the connection
 * is aborted, so curl exits 18 ("partial file") and fetch's body read rejects;
 * a read that fails before any byte is sent gets an error status instead.
 * Method: a real node process; a multi-block image is uploaded, then a block
 * file is removed from the node's data directory (a lost block), and the image
 * is read with curl and with fetch, whole and by range.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { patternBytes } from "./_files.ts";
import { exec } from "./_nbd.ts";
import { removeData, startNode, type TestNode } from "./_node.ts";

const MiB = 1024 * 1024;
/** The node's block size (serve's default). */
const blockBytes = 4 * MiB;
const imageBytes = 6 * blockBytes;

/** Uploads `bytes` as image `name` and removes the file of block `index` from the node's disk. */
async function imageLosingBlock(node: TestNode, name: string, bytes: Uint8Array, index: number) {
  const response = await node.fetch(`/v1/images/${name}`, {
    method: "PUT",
    body: bytes as Uint8Array<ArrayBuffer>,
  });
  assert.equal(response.status, 201, await response.text());
  const block = bytes.subarray(index * blockBytes, (index + 1) * blockBytes);
  const hash = createHash("sha256").update(block).digest("hex");
  const path = `${node.data}/blocks/${hash.slice(0, 2)}/${hash}`;
  assert.ok((await Deno.stat(path)).isFile, "the block is stored where the layout says");
  await Deno.remove(path);
}

Deno.test("a read that fails mid-stream aborts the response: curl exits 18, fetch rejects", async () => {
  const node = await startNode();
  try {
    await imageLosingBlock(node, "broken", patternBytes(imageBytes, 3), 4);

    const curl = await exec("curl", ["-sS", "-o", "/dev/null", `${node.url}/v1/images/broken`]);
    assert.equal(curl.code, 18, `curl must see a partial file:\n${curl.stderr}`);
    assert.match(curl.stderr, /transfer closed with \d+ bytes remaining/, "it knew the length");

    const response = await node.fetch("/v1/images/broken");
    assert.equal(response.status, 200, "the status line went out before the failure");
    assert.equal(response.headers.get("content-length"), String(imageBytes));
    await assert.rejects(response.arrayBuffer(), "the body read fails, it does not end short");

    // A range across the lost block is cut the same way.
    const range = `bytes=${3 * blockBytes}-${5 * blockBytes - 1}`;
    const ranged = await exec("curl", [
      "-sS",
      "-o",
      "/dev/null",
      "-H",
      `Range: ${range}`,
      `${node.url}/v1/images/broken`,
    ]);
    assert.equal(ranged.code, 18, `a ranged read is cut too:\n${ranged.stderr}`);

    // The node said what happened, and serves on.
    assert.ok(
      node.log.some((line) => /Cannot send bytes \d+-\d+: .*cut after/.test(line)),
      node.log.join("\n"),
    );
    const health = await node.fetch("/healthz");
    assert.equal(health.status, 200);
    await health.body?.cancel();
    const before = await node.fetch("/v1/images/broken", {
      headers: { range: `bytes=0-${MiB - 1}` },
    });
    assert.equal(before.status, 206);
    assert.equal((await before.arrayBuffer()).byteLength, MiB, "bytes before the loss still read");
  } finally {
    await node.stop();
    await removeData(node);
  }
});

Deno.test("a read that fails before the first byte is answered 500, not a short 200", async () => {
  const node = await startNode();
  try {
    await imageLosingBlock(node, "headless", patternBytes(imageBytes, 4), 0);
    const response = await node.fetch("/v1/images/headless");
    assert.equal(response.status, 500);
    const body = await response.json();
    assert.match(body.error, /Cannot read block [0-9a-f]{64}: it is not stored/);
    const curl = await exec("curl", [
      "-sS",
      "-f",
      "-o",
      "/dev/null",
      `${node.url}/v1/images/headless`,
    ]);
    assert.equal(curl.code, 22, "curl --fail sees the error status");
  } finally {
    await node.stop();
    await removeData(node);
  }
});
