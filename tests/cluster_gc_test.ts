/**
 * Goal: garbage collection in a cluster frees what nothing references on every
 * node, keeps what a clone still uses, and never takes the blocks of an upload
 * in progress on another node.
 * Method: three real node processes (`--gc-min-age 0.1 --gc-settle 0.2`, so
 * blocks are soon eligible and only pins and the age rule protect an upload); blocks
 * counted in each data directory; an upload streamed in two halves through
 * node 2 with a collection on node 1 in between; bytes compared by SHA-256.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { blockHolders, eventually, startCluster } from "./_cluster.ts";
import { api, createVolume, MiB, uploadImage } from "./_nbd.ts";
import { bytesSha256, patternBytes, streamSha256 } from "./_files.ts";
import { sha256Hex } from "../cluster/data/mod.ts";

const blockBytes = 4 * MiB;

function image(seeds: number[]): Uint8Array {
  const bytes = new Uint8Array(seeds.length * blockBytes);
  seeds.forEach((seed, i) => bytes.set(patternBytes(blockBytes, seed), i * blockBytes));
  return bytes;
}

Deno.test("cluster GC frees unreferenced blocks everywhere, keeps clones' and in-flight uploads'", async () => {
  const cluster = await startCluster(3, () => ["--gc-min-age", "0.1", "--gc-settle", "0.2"]);
  const [one, two, three] = cluster.nodes;
  try {
    const a = image([1, 2, 3]);
    const b = image([3, 4, 5]); // shares block 3 with a
    await uploadImage(one, "a", a);
    await uploadImage(one, "b", b);
    await createVolume(two, "vm1", { image: "a" });
    const hash = (seed: number) => sha256Hex(patternBytes(blockBytes, seed));
    for (const seed of [1, 2, 3, 4, 5]) {
      assert.equal(await blockHolders(cluster.nodes, hash(seed)), 3);
    }

    assert.equal((await three.fetch("/v1/images/a", { method: "DELETE" })).status, 204);
    assert.equal((await three.fetch("/v1/images/b", { method: "DELETE" })).status, 204);
    // Node 3 collects by itself a second after its deletions; node 1 is asked too,
    // once the blocks are older than the collection's own duration.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await api(one, "/v1/gc", {}, 200);
    await eventually(
      "blocks only image b used gone from every node",
      async () =>
        await blockHolders(cluster.nodes, hash(4)) === 0 &&
        await blockHolders(cluster.nodes, hash(5)) === 0,
    );
    for (const seed of [1, 2, 3]) {
      assert.equal(await blockHolders(cluster.nodes, hash(seed)), 3, `${seed}`);
    }
    const volume = await three.fetch("/v1/volumes/vm1/data");
    assert.equal(await streamSha256(volume.body!), bytesSha256(a), "the clone kept its blocks");

    // A volume written (its objects on 3 nodes) and deleted: collection removes its objects.
    await createVolume(two, "vm2", { size: 16 * MiB });
    const patched = await two.fetch("/v1/volumes/vm2/data?offset=0", {
      method: "PATCH",
      body: patternBytes(2 * blockBytes, 11),
    });
    assert.equal(patched.status, 200, await patched.text());
    const objects = async () => {
      let count = 0;
      for (const node of cluster.nodes) {
        for await (const dir of Deno.readDir(join(node.data, "objects"))) {
          for await (const _ of Deno.readDir(join(node.data, "objects", dir.name))) count++;
        }
      }
      return count;
    };
    assert.equal(await objects(), 6, "2 objects, 3 copies each");
    assert.equal((await two.fetch("/v1/volumes/vm2", { method: "DELETE" })).status, 204);
    await api(one, "/v1/gc", {}, 200);
    await eventually(
      "the deleted volume's objects gone from every node",
      async () => await objects() === 0,
    );

    // An upload in progress on node 2 while node 1 collects: its stored blocks are pinned.
    const c = image([6, 7, 8, 9]);
    const half = Promise.withResolvers<void>();
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(c.slice(0, 2 * blockBytes + 1000));
        await half.promise;
        controller.enqueue(c.slice(2 * blockBytes + 1000));
        controller.close();
      },
    });
    const uploading = two.fetch("/v1/images/c", { method: "PUT", body }).catch((error) => error);
    // Wait until node 2 stored the first two blocks, then let them age past --gc-min-age.
    for (let i = 0; i < 100 && await blockHolders(cluster.nodes, hash(7)) < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await new Promise((resolve) => setTimeout(resolve, 1500)); // older than any age margin
    const during = await api(one, "/v1/gc", {}, 200);
    assert.equal(during.deletedBlocks, 0, JSON.stringify(during));
    half.resolve();
    const response = await uploading;
    assert.ok(response instanceof Response, `the upload failed: ${response}`);
    assert.equal(response.status, 201, await response.text());
    const download = await one.fetch("/v1/images/c");
    assert.equal(await streamSha256(download.body!), bytesSha256(c), "the upload is whole");
    for (const seed of [6, 7, 8, 9]) assert.equal(await blockHolders(cluster.nodes, hash(seed)), 3);
  } finally {
    await cluster.stop();
  }
});

Deno.test("a failed upload's blocks leave every node once the age rule allows, with no collection asked", async () => {
  const cluster = await startCluster(3, () => ["--gc-min-age", "4", "--gc-settle", "0.2"]);
  const [one] = cluster.nodes;
  try {
    const seeds = [31, 32, 33];
    const hash = (seed: number) => sha256Hex(patternBytes(blockBytes, seed));
    // The client sends three whole blocks, waits until their replicas took them, then breaks off.
    const stored = async () => {
      for (const seed of seeds) {
        if (await blockHolders(cluster.nodes, hash(seed)) === 0) return false;
      }
      return true;
    };
    // Taken by their replicas (an upload's batch: in place once the batch settles).
    const taken = async () => {
      const uploads = await (await one.fetch("/v1/uploads")).json() as { blocks: number }[];
      return (uploads[0]?.blocks ?? 0) >= seeds.length;
    };
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (const seed of seeds) controller.enqueue(patternBytes(blockBytes, seed));
        controller.enqueue(new Uint8Array(4096)); // the last block is not complete
        await eventually("the upload's blocks stored", taken, 20_000);
        controller.error(new Error("client gone"));
      },
    });
    await one.fetch("/v1/images/broken", { method: "PUT", body }).then(
      (response) => response.body?.cancel(),
      () => {},
    );
    // Too young to go at once in a cluster (another node's upload may have found them
    // stored): still there a second after the failure (in place once the failed upload's batch
    // settled, which it does in the background).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await eventually("the failed upload's blocks kept while young", stored, 20_000);
    await eventually(
      "the failed upload's blocks gone from every node",
      async () => {
        for (const seed of seeds) {
          if (await blockHolders(cluster.nodes, hash(seed)) > 0) return false;
        }
        return true;
      },
      30_000,
    );
    assert.equal((await one.fetch("/v1/images/broken")).status, 404);
  } finally {
    await cluster.stop();
  }
});
