/**
 * Goal: when the lease holder does not hold every object of its volume (R < N),
 * it reads the others from their members once, then from the pages it keeps
 * (`--read-cache-mib`), bounded by that size, and every byte read back is the
 * byte written; a node started with `--read-cache-mib 0` keeps none.
 * Method: three `atoll serve` processes at `--replicas 1` (so the holder holds
 * about a third of the objects: that some are elsewhere is all but certain,
 * (1/3)^16 that none is), node 1 with an 8 MiB cache, node 2 with none; a
 * libnbd client writes the first 64 KiB of each of the 16 objects of a 64 MiB
 * volume through each node, reads them three times, then reads the whole
 * volume once (more than 8 MiB), comparing every byte; /metrics tells hits
 * and bytes kept.
 */
import assert from "node:assert/strict";
import { startCluster } from "./_cluster.ts";
import { createVolume, MiB, nbdPython } from "./_nbd.ts";
import { scrape } from "./_metrics.ts";

const size = 64 * MiB;

/** Prints how many reads did not return what was written (zeros elsewhere). */
const writeAndRead = `
c = nbd.NBD(); c.connect_uri(sys.argv[1])
size, obj, page = ${size}, 4 << 20, 65536
def head(i): return bytes(((i * 31 + j) * 7) & 0xff or 1 for j in range(page))
for i in range(size // obj): c.pwrite(head(i), i * obj)
c.flush()
bad = 0
for _ in range(3):
    for i in range(size // obj):
        if c.pread(page, i * obj) != head(i): bad += 1
zero = bytes(page)
for off in range(0, size, page):
    want = head(off // obj) if off % obj == 0 else zero
    if c.pread(page, off) != want: bad += 1
print(json.dumps(bad))
`;

Deno.test("the lease holder reads objects other members store from its pages, within --read-cache-mib", async () => {
  const cluster = await startCluster(3, (index) => [
    "--replicas",
    "1",
    "--read-cache-mib",
    index === 0 ? "8" : index === 1 ? "0" : "256",
  ]);
  try {
    const [cached, uncached] = cluster.nodes;
    for (const [node, name] of [[cached, "cached"], [uncached, "uncached"]] as const) {
      await createVolume(node, name, { size });
      assert.equal(await nbdPython(writeAndRead, [node.nbdUri(name)]), 0, `${name}: bytes`);
    }
    const metrics = await scrape(cached);
    const hits = metrics.value("atoll_cluster_remote_page_hits_total");
    const misses = metrics.value("atoll_cluster_remote_page_misses_total");
    const bytes = metrics.value("atoll_cluster_remote_page_bytes");
    // Each object held elsewhere: its first page misses once, then hits twice.
    assert.ok(hits >= 2, `hits ${hits}, misses ${misses}, bytes ${bytes}`);
    assert.ok(bytes > 0 && bytes <= 8 * MiB, `bytes ${bytes}`);
    // The cache's first page asked the node's worker for a slab of pages touched ahead.
    const slabs = async () => (await scrape(cached)).value("atoll_cluster_remote_page_slabs_total");
    const deadline = Date.now() + 10_000;
    while (await slabs() < 1 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(await slabs() >= 1, "a slab touched by the node's worker");
    assert.equal(metrics.value("atoll_cluster_remote_page_slab_failures_total"), 0);
    const none = await scrape(uncached);
    assert.equal(none.value("atoll_cluster_remote_page_hits_total"), 0);
    assert.equal(none.value("atoll_cluster_remote_page_bytes"), 0);
  } finally {
    await cluster.stop();
  }
});
