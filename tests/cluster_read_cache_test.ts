/**
 * Goal: with R < N the lease holder holds only part of its volume's objects;
 * it reads the rest from other members once, then from the pages it keeps
 * (`--read-cache-mib`), bounded by that size, and every byte read back is the
 * byte written; a node started with `--read-cache-mib 0` keeps none.
 * Method: three `atoll serve` processes at `--replicas 2` (node 1 with an
 * 8 MiB cache, node 2 with none); a libnbd client writes a 32 MiB volume
 * through each of them with a pattern, reads it back twice and compares; the
 * nodes' /metrics tell hits, misses and bytes kept.
 */
import assert from "node:assert/strict";
import { startCluster } from "./_cluster.ts";
import { createVolume, MiB, nbdPython } from "./_nbd.ts";
import type { TestNode } from "./_node.ts";

const size = 32 * MiB;

/**
 * Writes the pattern in 1 MiB requests, then reads back in 64 KiB requests the
 * first 16 MiB twice (the remote part of it fits in 8 MiB) and the whole volume
 * once (it does not); prints the mismatches.
 */
const writeReadTwice = `
c = nbd.NBD(); c.connect_uri(sys.argv[1])
size = ${size}
def chunk(off, n): return bytes(((off + i) * 7 + (off + i) // 4096) & 0xff for i in range(n))
for off in range(0, size, 1 << 20): c.pwrite(chunk(off, 1 << 20), off)
c.flush()
bad = 0
for end in [16 << 20, 16 << 20, size]:
    for off in range(0, end, 65536):
        if c.pread(65536, off) != chunk(off, 65536): bad += 1
print(json.dumps(bad))
`;

async function series(node: TestNode, name: string): Promise<number> {
  const text = await (await node.fetch("/metrics")).text();
  const match = text.match(new RegExp(`^${name} (\\d+)$`, "m"));
  assert.ok(match !== null, `${name} in /metrics:\n${text}`);
  return Number(match[1]);
}

Deno.test("the lease holder reads objects other members store from its pages, within --read-cache-mib", async () => {
  const cluster = await startCluster(3, (index) => [
    "--replicas",
    "2",
    "--read-cache-mib",
    index === 0 ? "8" : index === 1 ? "0" : "256",
  ]);
  try {
    const [cached, uncached] = cluster.nodes;
    for (const [node, name] of [[cached, "cached"], [uncached, "uncached"]] as const) {
      await createVolume(node, name, { size });
      assert.equal(await nbdPython(writeReadTwice, [node.nbdUri(name)]), 0, `${name}: bytes`);
    }
    const hits = await series(cached, "atoll_cluster_remote_page_hits_total");
    const bytes = await series(cached, "atoll_cluster_remote_page_bytes");
    // About a third of the objects are on the other two members only: the second read of
    // the first 16 MiB finds their pages, and the whole volume's read stays within 8 MiB.
    const misses = await series(cached, "atoll_cluster_remote_page_misses_total");
    assert.ok(hits > 0, `hits ${hits}, misses ${misses}, bytes ${bytes}`);
    assert.ok(bytes > 0 && bytes <= 8 * MiB, `bytes ${bytes}`);
    assert.equal(await series(uncached, "atoll_cluster_remote_page_hits_total"), 0);
    assert.equal(await series(uncached, "atoll_cluster_remote_page_bytes"), 0);
  } finally {
    await cluster.stop();
  }
});
