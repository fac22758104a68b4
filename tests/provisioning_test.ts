/**
 * Goal: nothing blocks provisioning. Thin clones, snapshots and deletions
 * requested while a garbage collection runs (with its pause between marks)
 * answer before that collection ends, through the node that collects.
 * Method: real node processes with a long `--gc-settle` (the pause a cluster
 * collection takes between its two marks), so a collection lasts seconds; an
 * image uploaded, then `POST /v1/gc` sent and, while it is pending, clones,
 * a snapshot and a deletion through the same node. The order of the answers
 * is the assertion (no wall-clock threshold): every provisioning answer
 * arrives before the collection's. Then the clones read back the image bytes.
 */
import assert from "node:assert/strict";
import { startCluster } from "./_cluster.ts";
import { createVolume, MiB, uploadImage, volumeBytes } from "./_nbd.ts";
import type { TestNode } from "./_node.ts";
import { patternBytes } from "./_files.ts";

/** Runs a collection through `node` and, while it runs, provisions through the same node. */
async function provisionDuringCollection(node: TestNode, image: Uint8Array, tag: string) {
  await uploadImage(node, `img-${tag}`, image);
  const order: string[] = [];
  const collecting = node.fetch("/v1/gc", { method: "POST" }).then(async (response) => {
    assert.equal(response.status, 200, await response.text());
    order.push("gc");
  });
  // The collection has started once it asked for its pins and is pausing.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const clones = Array.from({ length: 5 }, async (_, i) => {
    await createVolume(node, `${tag}-vm${i}`, { image: `img-${tag}` });
    order.push(`clone ${i}`);
  });
  await Promise.all(clones);
  const snapshot = await node.fetch(`/v1/volumes/${tag}-vm0/snapshots`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "s1" }),
  });
  assert.equal(snapshot.status, 201, await snapshot.text());
  order.push("snapshot");
  const deleted = await node.fetch(`/v1/volumes/${tag}-vm4`, { method: "DELETE" });
  assert.equal(deleted.status, 204, await deleted.text());
  order.push("delete");
  await collecting;
  assert.equal(order.at(-1), "gc", `the collection ended before provisioning: ${order}`);
  for (const i of [0, 1, 2, 3]) {
    assert.deepEqual(await volumeBytes(node, `${tag}-vm${i}`), image, `clone ${i}`);
  }
}

Deno.test("clones, snapshots and deletions do not wait for a cluster collection", async () => {
  const cluster = await startCluster(3, () => ["--gc-settle", "4"]);
  try {
    await provisionDuringCollection(cluster.nodes[0], patternBytes(12 * MiB, 42), "three");
  } finally {
    await cluster.stop();
  }
});
