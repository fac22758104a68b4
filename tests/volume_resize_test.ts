/**
 * Goal: a cloud image becomes a larger root disk, and a volume grows online
 * (issue 13): a clone may be larger than its image; a volume grows while a
 * client has it open and the next connection sees the new size; shrinking is
 * refused unless forced, and a forced shrink discards what lay past the new
 * end for good (it reads as zeros when the volume grows again); sizes that are
 * not whole sectors are refused with a clear 400. In a cluster the lease
 * holder resizes (another member refuses, as for a snapshot) and every member
 * serves the new size.
 * Method: real node processes; the HTTP API resizes; libnbd (Python) reads
 * sizes and bytes, qemu-io writes and checks patterns.
 */
import assert from "node:assert/strict";
import { bytesSha256, patternBytes } from "./_files.ts";
import { startCluster } from "./_cluster.ts";
import type { TestNode } from "./_node.ts";
import { api, createVolume, MiB, nbdPython, qemuIo, uploadImage, withNode } from "./_nbd.ts";

const sizeScript = `
c = nbd.NBD(); c.connect_uri(sys.argv[1])
print(json.dumps(c.get_size()))
`;

async function exportSize(node: TestNode, name: string): Promise<number> {
  return await nbdPython(sizeScript, [node.nbdUri(name)]) as number;
}

/** SHA-256 of the first `length` bytes of a volume, read over HTTP with a Range. */
async function head(node: TestNode, name: string, length: number): Promise<string> {
  const response = await node.fetch(`/v1/volumes/${name}/data`, {
    headers: { range: `bytes=0-${length - 1}` },
  });
  assert.equal(response.status, 206);
  return bytesSha256(new Uint8Array(await response.arrayBuffer()));
}

function resize(node: TestNode, name: string, body: unknown, status = 200) {
  return api(node, `/v1/volumes/${name}/resize`, body, status);
}

Deno.test("a clone larger than its image, grown online, shrunk only when forced", async () => {
  await withNode(async ({ node }) => {
    const image = patternBytes(8 * MiB, 3);
    await uploadImage(node, "cloud", image);
    const root = await createVolume(node, "root", { image: "cloud", size: 64 * MiB });
    assert.equal(root.size, 64 * MiB);
    assert.equal(await exportSize(node, "root"), 64 * MiB);
    await qemuIo(node.nbdUri("root"), ["write -P 5 60M 64k", "flush"]);
    await qemuIo(node.nbdUri("root"), ["read -P 0 8M 1M", "read -P 5 60M 64k"]);
    assert.equal(await head(node, "root", image.length), bytesSha256(image), "the image leads");
    await api(node, "/v1/volumes", { name: "small", image: "cloud", size: 4 * MiB }, 400);
    await api(node, "/v1/volumes", { name: "odd", image: "cloud", size: 64 * MiB + 1 }, 400);

    // Grown while a client holds a connection; the next connection sees the new size.
    const grown = await resize(node, "root", { size: 1024 * MiB });
    assert.equal(grown.size, 1024 * MiB);
    assert.equal(await exportSize(node, "root"), 1024 * MiB);
    await qemuIo(node.nbdUri("root"), [
      "read -P 5 60M 64k",
      "read -P 0 64M 1M",
      "write -P 6 1000M 4k",
    ]);
    await resize(node, "root", { size: 1024 * MiB + 100 }, 400);

    // Shrinking discards data: refused unless forced.
    await resize(node, "root", { size: 32 * MiB }, 409);
    await qemuIo(node.nbdUri("root"), ["read -P 5 60M 64k"]);
    await resize(node, "root", { size: 32 * MiB - 512, force: true });
    assert.equal(await exportSize(node, "root"), 32 * MiB - 512);
    await resize(node, "root", { size: 64 * MiB });
    await qemuIo(node.nbdUri("root"), [
      "read -P 0 60M 64k", // discarded by the shrink
      "read -P 0 32767k 512", // the last sector cut off, inside a kept block
    ]);
    assert.equal(await head(node, "root", image.length), bytesSha256(image));
  });
});

Deno.test("a volume grows through its lease holder and every member serves the new size", async () => {
  const cluster = await startCluster(3);
  try {
    const [one, two, three] = cluster.nodes;
    await createVolume(one, "vm", { size: 16 * MiB });
    await qemuIo(one.nbdUri("vm"), ["write -P 7 15M 1M", "flush"]);
    // Another member refuses while a live holder may be writing, as for a snapshot.
    const refused = await resize(two, "vm", { size: 48 * MiB }, 409);
    assert.match(String(refused.error), /holds its write lease/);
    const grown = await resize(one, "vm", { size: 48 * MiB });
    assert.equal(grown.size, 48 * MiB);
    for (const node of [one, two, three]) {
      assert.equal(await exportSize(node, "vm"), 48 * MiB, node.url);
      await qemuIo(node.nbdUri("vm"), ["read -P 7 15M 1M", "read -P 0 16M 32M"]);
    }
  } finally {
    await cluster.stop();
  }
});
