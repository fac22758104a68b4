/**
 * Goal: a lease its holder no longer uses goes back to the record when
 * another node reads the volume (the end of a live migration: the source's
 * connection closed, the VM reads at its new node), and reads there then go
 * to the data, not through the old holder; a connection still open at the
 * holder keeps the lease where it is; every read returns what was written,
 * and the next write at the new node takes the lease from nobody.
 * Method: three `atoll serve` processes at R=2; libnbd clients (Python): a
 * writer at node 1 that keeps its connection open until told, readers at
 * node 2 comparing every byte; the volume's record (GET /v1/volumes/NAME) and
 * /metrics (forwarded reads, reads from a kept reader, leases given up).
 */
import assert from "node:assert/strict";
import { eventually, startCluster } from "./_cluster.ts";
import { createVolume, holdNbdPython, MiB, nbdPython } from "./_nbd.ts";
import { scrape } from "./_metrics.ts";
import type { TestNode } from "./_node.ts";

const size = 16 * MiB;

/** The pattern of round `r`: 4 KiB pieces, each with its own bytes. */
const pattern = `
def piece(r, i): return bytes(((i * 7 + j + r * 31) % 251) or 1 for j in range(256)) * 16
`;

/** Writes round argv[2]'s pattern over the volume, flushes, prints true, and holds its connection. */
const writer = pattern + `
c = nbd.NBD(); c.connect_uri(sys.argv[1]); r = int(sys.argv[2])
for i in range(${size} // 4096): c.pwrite(piece(r, i), i * 4096)
c.flush()
print(json.dumps(True), flush=True)
sys.stdin.read()
`;

/** Reads argv[3] random 4 KiB pieces and compares them with round argv[2]'s pattern. */
const reader = pattern + `
import random
c = nbd.NBD(); c.connect_uri(sys.argv[1]); r = int(sys.argv[2])
bad = 0
for n in range(int(sys.argv[3])):
    i = random.randrange(${size} // 4096)
    if c.pread(4096, i * 4096) != piece(r, i): bad += 1
c.shutdown()
print(json.dumps(bad))
`;

async function read(node: TestNode, round: number, count: number): Promise<void> {
  const bad = await nbdPython(reader, [node.nbdUri("vm1"), String(round), String(count)]);
  assert.equal(bad, 0, `reads through ${node.nbdUri("vm1")} that differ from round ${round}`);
}

/** The lease of vm1 as `node` reports it. */
async function leaseOf(node: TestNode): Promise<{ holder: string | null; heldHere: boolean }> {
  const info = await (await node.fetch("/v1/volumes/vm1")).json();
  return { holder: info.lease?.holder ?? null, heldHere: info.heldHere };
}

async function counter(node: TestNode, name: string): Promise<number> {
  return (await scrape(node)).value(name);
}

Deno.test("a lease unused at its holder goes back to the record when another node reads", async () => {
  const cluster = await startCluster(3, () => ["--replicas", "2"]);
  const [one, two, three] = cluster.nodes;
  try {
    await createVolume(one, "vm1", { size });
    const client = await holdNbdPython(writer, [one.nbdUri("vm1"), "0"]);
    let released = false;
    try {
      // The writer's connection is open at node 1: reads at node 2 go there.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const forwarded = await counter(two, "atoll_lease_forwarded_reads_total");
      await read(two, 0, 200);
      assert.ok(
        await counter(two, "atoll_lease_forwarded_reads_total") - forwarded >= 200,
        "reads at node 2 forwarded to the holder while its client is connected",
      );
      assert.ok((await leaseOf(one)).heldHere, "node 1 keeps the lease while a connection is open");
      assert.equal(await counter(one, "atoll_lease_idle_releases_total"), 0);
    } finally {
      await client.release();
      released = true;
    }
    assert.ok(released);
    // The writer is gone (the VM moved): the first read elsewhere, once the grace
    // since its last write passed, has node 1 give the lease up.
    await eventually("node 1 gives up the lease it no longer uses", async () => {
      await read(two, 0, 20);
      return (await leaseOf(three)).holder === null;
    }, 20_000);
    assert.equal(await counter(one, "atoll_lease_idle_releases_total"), 1);
    // Node 2 then reads from a reader it keeps, not through node 1.
    await eventually("node 2 reads from a kept reader", async () => {
      const before = await counter(two, "atoll_lease_idle_reads_total");
      await read(two, 0, 20);
      return await counter(two, "atoll_lease_idle_reads_total") - before >= 20;
    }, 20_000);
    const forwarded = await counter(two, "atoll_lease_forwarded_reads_total");
    await read(two, 0, 300);
    assert.equal(
      await counter(two, "atoll_lease_forwarded_reads_total"),
      forwarded,
      "no read at node 2 goes through node 1 any more",
    );
    // The VM writes at its new node: it takes the lease from nobody; every node reads it.
    const next = await holdNbdPython(writer, [two.nbdUri("vm1"), "1"]);
    await next.release();
    assert.ok((await leaseOf(two)).heldHere, "node 2 took the lease with its write");
    for (const node of [one, two, three]) await read(node, 1, 100);
  } finally {
    await cluster.stop();
  }
});
