/**
 * Goal: an upload's blocks go to their replicas as one batch, synced together
 * at its end (cluster/data/_block_batch.ts), and an upload answered for never
 * counts on copies a replica lost: a member killed with `kill -9` and started
 * again mid-upload drops the blocks it took and had not made durable (its
 * engine clears them at start), so the upload either fails (503, "store them
 * again") or every block it names is durable on a write quorum of its
 * replicas; the upload done again then succeeds and reads back whole.
 * Method: three real node processes at R=2 (a quorum of two: a block placed on
 * the restarted member and one other is left on one copy). The body streams
 * from the test; after half of it the test waits for those blocks to be
 * stored (`/v1/uploads`), kills node 3 with SIGKILL, starts it again on its
 * data directory, waits for it to be alive everywhere, then sends the rest.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { blockHolders, eventually, members, startCluster } from "./_cluster.ts";
import { patternBytes } from "./_files.ts";
import { startNode, type TestNode } from "./_node.ts";

const MiB = 1024 * 1024;
const blockBytes = 4 * MiB;
const blocks = Array.from({ length: 12 }, (_, i) => patternBytes(blockBytes, 900 + i));
const hashes = blocks.map((data) => createHash("sha256").update(data).digest("hex"));

/** Uploads `name` from `blocks`, calling `between` after the first half; the response. */
async function upload(node: TestNode, name: string, between: () => Promise<void>) {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === blocks.length / 2) await between();
      if (sent === blocks.length) return controller.close();
      controller.enqueue(blocks[sent++]);
    },
  });
  const response = await node.fetch(`/v1/images/${name}`, {
    method: "PUT",
    body,
    headers: { "content-length": String(blocks.length * blockBytes) },
  });
  return { status: response.status, text: await response.text() };
}

Deno.test("an upload never counts on blocks a replica restarted under lost", async () => {
  const cluster = await startCluster(3, () => ["--replicas", "2"]);
  const nodes = cluster.nodes;
  try {
    const storedBlocks = async () => {
      const uploads = await (await nodes[0].fetch("/v1/uploads")).json() as { blocks: number }[];
      return uploads[0]?.blocks ?? 0;
    };
    const first = await upload(nodes[0], "img", async () => {
      await eventually("half the image stored", async () => await storedBlocks() >= 6);
      await nodes[2].kill9();
      // At its address, as a restarted service comes back: the settle finds the new process.
      const address = nodes[2].gossip!;
      nodes[2] = await startNode({
        data: nodes[2].data,
        args: [
          ...["--gossip", address, "--cluster-key-file", `${cluster.dir}/key`],
          ...["--join", nodes[0].gossip!, "--replicas", "2"],
        ],
      });
      await eventually("node 3 alive everywhere again", async () => {
        const views = await Promise.all(nodes.map(members));
        return views.every((view) => view.filter((m) => m.state === "alive").length === 3);
      });
    });
    const durable = await Promise.all(hashes.map((hash) => blockHolders(nodes, hash)));
    console.log(
      `first upload: ${first.status} ${first.text.slice(0, 400)}, durable copies ${durable}`,
    );
    if (first.status === 503) {
      assert.match(first.text, /store them again/);
    } else {
      assert.equal(first.status, 201, first.text);
      // Answered for: every block on a quorum of its two replicas, both durable.
      assert.deepEqual(durable.filter((count) => count < 2), [], `durable copies ${durable}`);
    }
    const again = first.status === 503
      ? await upload(nodes[0], "img", () => Promise.resolve())
      : first;
    assert.equal(again.status, 201, again.text);
    const copies = await Promise.all(hashes.map((hash) => blockHolders(nodes, hash)));
    assert.deepEqual(copies.filter((count) => count < 2), [], `durable copies ${copies}`);
    const read = new Uint8Array(await (await nodes[2].fetch("/v1/images/img")).arrayBuffer());
    assert.equal(read.length, blocks.length * blockBytes);
    for (const [i, data] of blocks.entries()) {
      assert.ok(read.subarray(i * blockBytes, (i + 1) * blockBytes).every((b, j) => b === data[j]));
    }
  } finally {
    await cluster.stop();
  }
});
