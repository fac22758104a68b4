/**
 * Goal: volumes of any size the API accepts work end to end (issue 12): a
 * 64 TiB volume is created, written at its first, middle and last blocks,
 * flushed, snapshotted and cloned, the clone written, and every byte read
 * back through NBD, on a single node and on a 3-node cluster, before and
 * after `kill -9` and a restart. Maps are trees of pages, so none of this
 * costs what the volume's size would.
 * Method: real node processes; libnbd (Python) writes patterns and reads them
 * back, with zeros checked around them; the node is killed while nothing
 * closed the connections, then restarted on its data directory.
 */
import assert from "node:assert/strict";
import { eventually, startCluster } from "./_cluster.ts";
import { startNode, type TestNode } from "./_node.ts";
import { api, createSnapshot, createVolume, nbdPython, withNode } from "./_nbd.ts";

const size = 64 * 1024 ** 4;
const sector = 4096;
/** Where the test writes, and the pattern byte of each write. */
const writes: [number, number][] = [[0, 1], [size / 2, 2], [size - sector, 3]];
/** The clone's own write, next to the middle one. */
const cloneWrite: [number, number] = [size / 2 + sector, 4];

const writeScript = `
c = nbd.NBD(); c.connect_uri(sys.argv[1])
for pair in json.loads(sys.argv[2]):
    c.pwrite(bytes([pair[1]]) * ${sector}, pair[0])
c.flush()
print(json.dumps(c.get_size()))
`;

/** Reads one sector at each offset; prints each sector's distinct byte values. */
const readScript = `
c = nbd.NBD(); c.connect_uri(sys.argv[1])
print(json.dumps([sorted(set(c.pread(${sector}, off))) for off in json.loads(sys.argv[2])]))
`;

async function write(uri: string, pairs: [number, number][]): Promise<void> {
  const reported = await nbdPython(writeScript, [uri, JSON.stringify(pairs)]);
  assert.equal(reported, size, "the export has the volume's size");
}

/** Asserts each sector at `expect`'s offsets holds its byte (0: zeros). */
async function expectSectors(uri: string, expect: [number, number][]): Promise<void> {
  const offsets = expect.map(([offset]) => offset);
  const found = await nbdPython(readScript, [uri, JSON.stringify(offsets)]) as number[][];
  assert.deepEqual(found, expect.map(([, value]) => [value]), uri);
}

/** What each export holds at the written sectors and beside them. */
function expected(withClone: boolean): [number, number][] {
  const around: [number, number][] = [[sector, 0], [size / 2 - sector, 0], [size - 2 * sector, 0]];
  const clone: [number, number] = withClone ? cloneWrite : [cloneWrite[0], 0];
  return [...writes, ...around, clone];
}

async function checkAll(node: TestNode): Promise<void> {
  await expectSectors(node.nbdUri("big"), expected(false));
  await expectSectors(node.nbdUri("snapshot/big@s"), expected(false));
  await expectSectors(node.nbdUri("copy"), expected(true));
}

/** Creates, writes, snapshots and clones a 64 TiB volume through `node`. */
async function buildThrough(node: TestNode): Promise<void> {
  const created = await createVolume(node, "big", { size });
  assert.equal(created.size, size);
  await write(node.nbdUri("big"), writes);
  await createSnapshot(node, "big", "s");
  await createVolume(node, "copy", { snapshot: "big@s" });
  await write(node.nbdUri("copy"), [cloneWrite]);
  const info = await (await node.fetch("/v1/volumes/big")).json();
  assert.equal(info.allocatedBlocks, 3, "three 4 MiB blocks of 16 Mi are allocated");
}

Deno.test("a 64 TiB volume on one node: written at both ends, snapshotted, cloned, and kept across kill -9", async () => {
  await withNode(async (setup) => {
    await buildThrough(setup.node);
    await checkAll(setup.node);
    await setup.node.kill9();
    setup.node = await startNode({ data: setup.node.data });
    await checkAll(setup.node);
    // The map records stay small: the record of the volume is a root, not 16 Mi entries.
    const volume = await api(setup.node, "/v1/volumes", { name: "another", size }, 201);
    assert.equal(volume.size, size);
  });
});

Deno.test("a 64 TiB volume on a 3-node cluster: written, snapshotted, cloned, read everywhere, kept across kill -9", async () => {
  const cluster = await startCluster(3);
  try {
    const [first, second, third] = cluster.nodes;
    await buildThrough(second);
    for (const node of cluster.nodes) await checkAll(node);
    // The lease holder dies without a word and comes back on its data directory.
    await second.kill9();
    const restarted = await startNode({
      data: second.data,
      args: cluster.args(["--join", first.gossip!]),
    });
    cluster.nodes[1] = restarted;
    await eventually("the restarted member reads the volumes", async () => {
      try {
        await checkAll(restarted);
        return true;
      } catch {
        return false;
      }
    });
    for (const node of [first, third]) await checkAll(node);
  } finally {
    await cluster.stop();
  }
});
