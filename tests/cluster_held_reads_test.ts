/**
 * Goal: after a volume's lease moves, the new holder reads what the last holder
 * wrote from one copy of each object (the one its first read found newest),
 * and every byte it reads is the byte written.
 * Method: three `atoll serve` processes at `--replicas 3`; a libnbd client
 * writes the first 64 KiB of each of the 16 objects of a 64 MiB volume through
 * node 1 and flushes; another writes 4 KiB into object 0 through node 2 (the
 * lease moves there) and reads every object's head three times, comparing
 * bytes; node 2's /metrics counts the reads served from one copy.
 */
import assert from "node:assert/strict";
import { startCluster } from "./_cluster.ts";
import { createVolume, MiB, nbdPython } from "./_nbd.ts";
import { scrape } from "./_metrics.ts";

const size = 64 * MiB;
const head = `
size, obj, page = ${size}, 4 << 20, 65536
def head(i): return bytes(((i * 29 + j) * 11) & 0xff or 1 for j in range(page))
`;

Deno.test("a new lease holder reads what the last one wrote from one copy, byte for byte", async () => {
  const cluster = await startCluster(3, () => ["--replicas", "3"]);
  try {
    const [first, second] = cluster.nodes;
    await createVolume(first, "v", { size });
    await nbdPython(
      `${head}
c = nbd.NBD(); c.connect_uri(sys.argv[1])
for i in range(size // obj): c.pwrite(head(i), i * obj)
c.flush(); c.shutdown(); print(json.dumps(True))`,
      [first.nbdUri("v")],
    );
    const before = (await scrape(second)).value("atoll_cluster_object_held_reads_total");
    const bad = await nbdPython(
      `${head}
c = nbd.NBD(); c.connect_uri(sys.argv[1])
c.pwrite(b'z' * 4096, page)  # into object 0, past its head: the lease moves here
c.flush()
bad = 0
for _ in range(3):
    for i in range(size // obj):
        if c.pread(page, i * obj) != head(i): bad += 1
print(json.dumps(bad))`,
      [second.nbdUri("v")],
    );
    assert.equal(bad, 0, "reads through the new holder returned other bytes");
    const held = (await scrape(second)).value("atoll_cluster_object_held_reads_total") - before;
    // Objects 1-15 it never wrote: the first read of each looks everywhere, the next two do not.
    assert.ok(held >= 2 * 15, `${held} reads from one copy, at least 30 expected`);
  } finally {
    await cluster.stop();
  }
});
