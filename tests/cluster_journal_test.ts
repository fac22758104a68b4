/**
 * Goal: on a cluster, what a FLUSH acknowledged survives `kill -9` of every
 * node at once: each replica's journal (cluster/data/object_journal.ts) is
 * what the restarted nodes find their objects' stamps and bytes in, since no
 * checkpoint ran between the writes and the kill. Writes after the last
 * flush may or may not survive; whichever did, every node reads the same.
 * Method: three real node processes (R=3); a libnbd client writes through
 * node 1 (random offsets and sizes, a model of the bytes kept), flushes, writes
 * more without a flush, then all three are killed with SIGKILL while the
 * client is connected; they restart on their data directories (node 1 first,
 * the others join it) and the volume is read through every node over NBD.
 * kill -9 leaves the page cache to the kernel, so the object files' bytes may
 * survive without the journal, but their stamps live only in it: without the
 * replay the objects read as absent. Power loss is
 * cluster/data/object_journal_test.ts.
 * The second test does the same to a client that flushes after every write,
 * at R=2 on three nodes, whose flushes the holder starts itself as each write
 * ends (cluster/data/_early_flushes.ts): every write it made comes back.
 */
import assert from "node:assert/strict";
import { restartAll, startCluster } from "./_cluster.ts";
import { createVolume, holdNbdPython, MiB, nbdPython, nbdSha256 } from "./_nbd.ts";
import { scrape } from "./_metrics.ts";

const size = 32 * MiB;

/**
 * Writes, a flush, more writes (each of one repeated byte); saves the flushed
 * model and the later writes in argv[2], prints "written" and waits.
 */
const writer = `
import random
c = nbd.NBD(); c.connect_uri(sys.argv[1])
rng = random.Random(11)
model = bytearray(${size})
def write(n):
    done = []
    for i in range(n):
        length = rng.choice([512, 4096, 65536, 262144])
        off = rng.randrange(0, ${size} - length) // 512 * 512
        value = rng.randrange(1, 256)
        c.pwrite(bytes([value]) * length, off); model[off:off + length] = bytes([value]) * length
        done.append([off, length, value])
    return done
write(150)
c.flush()
open(sys.argv[2] + "/flushed.bin", "wb").write(model)
later = write(40)
open(sys.argv[2] + "/later.json", "w").write(json.dumps(later))
print(json.dumps("written"), flush=True)
sys.stdin.read()
`;

/**
 * Reads the volume through argv[1] and counts the bytes that are neither the
 * flushed state nor a value one of the later writes put there.
 */
const checker = `
c = nbd.NBD(); c.connect_uri(sys.argv[1])
flushed = open(sys.argv[2] + "/flushed.bin", "rb").read()
later = json.loads(open(sys.argv[2] + "/later.json").read())
volume = bytearray()
for off in range(0, ${size}, ${4 * MiB}): volume += c.pread(${4 * MiB}, off)
final = bytearray(flushed)
for off, length, value in later: final[off:off + length] = bytes([value]) * length
edges = sorted({0, ${size}} | {e for off, length, _ in later for e in (off, off + length)})
wrong = 0
for a, b in zip(edges, edges[1:]):
    got = volume[a:b]
    if got == flushed[a:b] or got == final[a:b]: continue
    values = {v for off, length, v in later if off <= a and b <= off + length}
    wrong += sum(1 for i in range(a, b) if volume[i] != flushed[i] and volume[i] not in values)
print(json.dumps({"wrong": wrong, "same": volume == flushed, "sha": hashlib.sha256(volume).hexdigest()}))
`;

Deno.test("flushed writes survive kill -9 of every node of the cluster at once", async () => {
  const cluster = await startCluster(3);
  const nodes = cluster.nodes;
  const dir = await Deno.makeTempDir({ prefix: "atoll-journal-" });
  try {
    await createVolume(nodes[0], "vm1", { size });
    const client = await holdNbdPython(writer, [nodes[0].nbdUri("vm1"), dir]);
    assert.equal(client.result, "written");
    for (const node of nodes) await node.kill9();
    await client.release();

    await restartAll(cluster);
    const seen: { wrong: number; same: boolean; sha: string }[] = [];
    for (const node of nodes) {
      seen.push(
        await nbdPython("import hashlib\n" + checker, [node.nbdUri("vm1"), dir]) as {
          wrong: number;
          same: boolean;
          sha: string;
        },
      );
    }
    for (const [i, { wrong }] of seen.entries()) {
      assert.equal(wrong, 0, `node ${i + 1}: bytes neither flushed nor written later`);
    }
    assert.deepEqual(
      seen.map(({ sha }) => sha),
      seen.map(() => seen[0].sha),
      "one state everywhere",
    );
    console.log(seen[0].same ? "the flushed state" : "the flushed state and later writes");
  } finally {
    await cluster.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Writes of one repeated byte, each followed by a FLUSH; prints the model as nbdSha256 does. */
const flushingWriter = `
import hashlib, random
c = nbd.NBD(); c.connect_uri(sys.argv[1])
rng = random.Random(12)
model = bytearray(${size})
for i in range(300):
    length = rng.choice([512, 4096, 65536])
    off = rng.randrange(0, ${size} - length) // 512 * 512
    value = rng.randrange(1, 256)
    c.pwrite(bytes([value]) * length, off); c.flush()
    model[off:off + length] = bytes([value]) * length
print(json.dumps(f"{len(model)}:{hashlib.sha256(model).hexdigest()}"), flush=True)
sys.stdin.read()
`;

Deno.test("writes each flushed by the holder's early flushes survive kill -9 of every node", async () => {
  const cluster = await startCluster(3, () => ["--replicas", "2"]);
  const nodes = cluster.nodes;
  try {
    await createVolume(nodes[0], "db", { size });
    const client = await holdNbdPython(flushingWriter, [nodes[0].nbdUri("db")]);
    const early = (await scrape(nodes[0])).value("atoll_cluster_early_flushes_total");
    assert.ok(early >= 200, `the holder started the flushes itself (${early} of 300)`);
    for (const node of nodes) await node.kill9();
    await client.release();

    await restartAll(cluster);
    for (const [i, node] of nodes.entries()) {
      assert.equal(
        await nbdSha256(node.nbdUri("db")),
        client.result,
        `node ${i + 1} reads every flushed write`,
      );
    }
  } finally {
    await cluster.stop();
  }
});
