/**
 * Goal: a cluster holding many volumes keeps a fixed number of descriptors
 * (each voter used to keep a file open per metadata key, so a few hundred
 * volumes took a node past an open-files limit of 1024), and every volume
 * created is still there, with its size, after every member is killed -9 at
 * once in the middle of more creations and started again (the acceptor states
 * come back from the log; a creation answered 201 was durable).
 * Method: three `atoll serve` processes; 600 volumes created over HTTP, eight
 * at a time; descriptors counted in /proc before and after; more creations,
 * and kill -9 of all three while they run; restart on the same data
 * directories; the list and a sample of the volumes read through every member.
 */
import assert from "node:assert/strict";
import { eventually, restartAll, startCluster } from "./_cluster.ts";
import type { TestNode } from "./_node.ts";

const volumes = 600;
const sizeOf = (i: number) => (1 + i % 7) << 20;

const descriptors = (node: TestNode) =>
  [...Deno.readDirSync(`/proc/${node.process.pid}/fd`)].length;

async function create(node: TestNode, i: number): Promise<void> {
  const response = await node.fetch("/v1/volumes", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: `vol${i}`, size: sizeOf(i) }),
  });
  const text = await response.text();
  assert.equal(response.status, 201, `vol${i}: ${text}`);
}

Deno.test("600 volumes keep the descriptors flat; every volume answered 201 is there after kill -9 of every member", async () => {
  const cluster = await startCluster(3);
  const nodes = cluster.nodes;
  try {
    const before = nodes.map(descriptors);
    for (let i = 0; i < volumes; i += 8) {
      await Promise.all(
        Array.from({ length: Math.min(8, volumes - i) }, (_, j) => create(nodes[0], i + j)),
      );
    }
    const after = nodes.map(descriptors);
    for (const [i, count] of after.entries()) {
      assert.ok(
        count < before[i] + 100,
        `node ${i + 1}: ${before[i]} descriptors before ${volumes} volumes, ${count} after`,
      );
    }

    // More creations, and every member killed while they run.
    const answered: number[] = [];
    let stopped = false;
    const burst = (async () => {
      for (let i = volumes; !stopped; i += 8) {
        const batch = Array.from({ length: 8 }, (_, j) => i + j);
        const results = await Promise.allSettled(batch.map((n) => create(nodes[0], n)));
        results.forEach((result, j) => result.status === "fulfilled" && answered.push(batch[j]));
      }
    })();
    await eventually("creations under way", () => Promise.resolve(answered.length >= 40));
    stopped = true;
    for (const node of nodes) await node.kill9();
    await burst;
    const expected = [...Array.from({ length: volumes }, (_, i) => i), ...answered];

    await restartAll(cluster);
    for (const [n, node] of nodes.entries()) {
      const listed = await (await node.fetch("/v1/volumes")).json() as { name: string }[];
      const names = new Set(listed.map((volume) => volume.name));
      const missing = expected.map((i) => `vol${i}`).filter((name) => !names.has(name));
      assert.deepEqual(missing, [], `node ${n + 1} lists every volume`);
      for (const i of expected.filter((_, k) => k % 50 === n || k >= expected.length - 5)) {
        const response = await node.fetch(`/v1/volumes/vol${i}`);
        const volume = await response.json();
        assert.equal(response.status, 200, `vol${i} through node ${n + 1}`);
        assert.equal(volume.size, sizeOf(i), `vol${i}'s size through node ${n + 1}`);
      }
    }
  } finally {
    await cluster.stop();
  }
});
