/**
 * Goal: a replica writes a large change that came from a writer on another
 * node around its page cache (cluster/data/object_service.ts through
 * core/_direct_writes.ts), and every copy still holds exactly the writer's
 * bytes, whatever mix of small (journalled, buffered) and large (direct,
 * aligned or not) writes an object took.
 * Method: three real node processes (R=3, healing slowed so that no scrub
 * reads the files); a libnbd client writes through node 1 (the lease holder)
 * into three objects: small writes then a 1 MiB write over some of them and a
 * misaligned 256 KiB one; one write of 3 MiB and 1000 bytes; four 1 MiB
 * writes into a new object, then 1 MiB over the first of them; then flushes.
 * Before anything reads the files, fincore tells how much of each node's copy
 * of that third object is in the page cache (the holder's fill went around it
 * as the replicas' copies do, its overwrite did not: 1 MiB cached; the
 * replicas' none), and /metrics that each node wrote the fill's four 1 MiB
 * from its buffer as it came (the holder's NBD payload, the replicas' link
 * body: page-aligned, no staging copy); then every node's object files
 * are compared with the client's model of the volume, and the volume is read
 * back over NBD through each node.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { startCluster } from "./_cluster.ts";
import { createVolume, MiB, nbdPython } from "./_nbd.ts";
import type { TestNode } from "./_node.ts";
import { scrape } from "./_metrics.ts";

const size = 16 * MiB;

/** Writes as the module doc says, flushes; prints the SHA-256 of each 4 MiB object of the model. */
const writer = `
import hashlib, random
c = nbd.NBD(); c.connect_uri(sys.argv[1])
rng = random.Random(5)
model = bytearray(${size})
def write(off, length):
    data = bytes(rng.randrange(256) for _ in range(256)) * (length // 256) + bytes(length % 256)
    c.pwrite(data, off); model[off:off + length] = data
for _ in range(64): write(rng.randrange(0, 1024) * 4096, 4096)
write(${MiB}, ${MiB})
write(${2 * MiB} + 512, 262144)
write(${4 * MiB}, ${3 * MiB} + 1000)
for i in range(4): write(${8 * MiB} + i * ${MiB}, ${MiB})
write(${8 * MiB}, ${MiB})
c.flush()
O = ${4 * MiB}
print(json.dumps([hashlib.sha256(model[o:o + O]).hexdigest() for o in range(0, ${size}, O)]))
`;

/** Reads the whole volume through argv[1]; prints the SHA-256 of each 4 MiB. */
const reader = `
import hashlib
c = nbd.NBD(); c.connect_uri(sys.argv[1])
O = ${4 * MiB}
print(json.dumps([hashlib.sha256(c.pread(O, o)).hexdigest() for o in range(0, ${size}, O)]))
`;

/** The object files of the node's only volume, by object index. */
async function objectFiles(node: TestNode): Promise<Map<number, string>> {
  const root = join(node.data, "objects");
  const uids = [];
  for await (const entry of Deno.readDir(root)) uids.push(entry.name);
  assert.equal(uids.length, 1, `one volume's objects on ${node.data}`);
  const files = new Map<number, string>();
  for await (const entry of Deno.readDir(join(root, uids[0]))) {
    files.set(Number(entry.name.split(".")[1]), join(root, uids[0], entry.name));
  }
  return files;
}

/** Bytes of `path` in the page cache (util-linux's fincore). */
async function cachedBytes(path: string): Promise<number> {
  const out = await new Deno.Command("fincore", { args: ["-b", "-n", "-o", "RES", path] }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/** SHA-256 of an object file read as a 4 MiB object (bytes past its end are zeros). */
async function objectHash(path: string): Promise<string> {
  const bytes = new Uint8Array(4 * MiB);
  bytes.set(await Deno.readFile(path));
  return createHash("sha256").update(bytes).digest("hex");
}

Deno.test("replicas write a peer's large changes around the page cache, and every copy is the writer's", async () => {
  const cluster = await startCluster(3, () => ["--replicas", "3", "--heal-interval", "600"]);
  const nodes = cluster.nodes;
  try {
    await createVolume(nodes[0], "vm1", { size });
    const model = await nbdPython(writer, [nodes[0].nbdUri("vm1")]) as string[];
    const files = await Promise.all(nodes.map(objectFiles));

    // A fill of four 1 MiB writes, then one overwrite: only the holder's overwrite is cached.
    const cached = await Promise.all(files.map((byIndex) => cachedBytes(byIndex.get(2)!)));
    assert.ok(cached[0] >= MiB, `the holder's own overwrite is written buffered: ${cached}`);
    assert.ok(cached[0] < 2 * MiB, `the holder's own fill went around the cache: ${cached}`);
    for (const replica of [1, 2]) {
      assert.ok(cached[replica] < 256 * 1024, `node ${replica + 1}'s copy went direct: ${cached}`);
    }
    // The holder's fill was written from the NBD requests' page-aligned payloads (nbd/server.ts),
    // as the replicas' from the link's bodies: no staging copy.
    const unstaged = (await Promise.all(nodes.map(scrape)))
      .map((m) => m.value("atoll_disk_direct_writes_unstaged_total", { kind: "object" }));
    assert.ok(unstaged.every((count) => count >= 4), `direct writes without a copy: ${unstaged}`);

    for (const [i, byIndex] of files.entries()) {
      assert.deepEqual([...byIndex.keys()].sort(), [0, 1, 2], `node ${i + 1} stores objects 0-2`);
      for (const [index, path] of byIndex) {
        assert.equal(await objectHash(path), model[index], `node ${i + 1}, object ${index}`);
      }
    }
    for (const node of nodes) {
      assert.deepEqual(await nbdPython(reader, [node.nbdUri("vm1")]), model);
    }
  } finally {
    await cluster.stop();
  }
});
