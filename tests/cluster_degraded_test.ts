/**
 * Goal: a cluster keeps serving with a member down, and a node that never
 * joined serves nothing. With `--replicas 2` on three members, `kill -9` of one
 * must leave every volume attachable, readable and writable and every image
 * readable within 15 s (metadata has three voters whatever R is; writes go on
 * with one copy while the other replica is dead). A node whose seed does not
 * answer refuses writes and NBD with a 503 / NBD error that says why.
 * Method: real `atoll serve` processes, qemu-io over NBD with pattern checks,
 * image bytes compared over HTTP, `kill -9`.
 */
import assert from "node:assert/strict";
import { removeData, startNode } from "./_node.ts";
import { startCluster } from "./_cluster.ts";
import { createVolume, exec, MiB, qemuIo, uploadImage } from "./_nbd.ts";
import { bytesSha256, streamSha256 } from "./_files.ts";

Deno.test("R=2 on three members: a kill -9 leaves every volume and image usable within 15 s", async () => {
  const cluster = await startCluster(3, () => ["--replicas", "2", "--heal-interval", "1"]);
  const [one, two, three] = cluster.nodes;
  try {
    const images: Record<string, string> = {};
    for (const name of ["img-a", "img-b", "img-c"]) {
      const image = new Uint8Array(12 * MiB);
      for (let at = 0; at < image.length; at += 65536) {
        crypto.getRandomValues(image.subarray(at, at + 65536));
      }
      await uploadImage(one, name, image);
      images[name] = bytesSha256(image);
    }
    const volumes = ["vm1", "vm2", "vm3", "vm4", "vm5", "vm6"];
    for (const [i, name] of volumes.entries()) {
      await createVolume(one, name, { image: `img-${"abc"[i % 3]}` });
      // Written through node 1 (it takes the lease) and flushed.
      await qemuIo(one.nbdUri(name), [`write -P 0x${i + 1}1 ${i * MiB} 65536`, "flush"]);
    }

    await two.kill9();
    const killedAt = performance.now();
    const pending = new Set([...volumes, ...Object.keys(images)]);
    const failures = new Map<string, string>();
    while (pending.size > 0 && performance.now() - killedAt < 15_000) {
      for (const item of [...pending]) {
        try {
          if (item in images) {
            const response = await three.fetch(`/v1/images/${item}`);
            assert.equal(response.status, 200);
            assert.equal(await streamSha256(response.body!), images[item]);
          } else {
            const i = volumes.indexOf(item);
            // Through node 3: attach, read node 1's flushed write, write (the lease moves), read back.
            await qemuIo(three.nbdUri(item), [
              `read -P 0x${i + 1}1 ${i * MiB} 65536`,
              `write -P 0x${i + 1}2 ${i * MiB + 65536} 4096`,
              "flush",
              `read -P 0x${i + 1}2 ${i * MiB + 65536} 4096`,
            ]);
          }
          pending.delete(item);
        } catch (error) {
          failures.set(item, (error as Error).message.slice(0, 300));
        }
      }
      if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const tookMs = Math.round(performance.now() - killedAt);
    assert.deepEqual(
      [...pending].map((item) => `${item}: ${failures.get(item)}`),
      [],
      `usable within 15 s of the kill (${tookMs} ms)`,
    );
    console.log(`every volume and image usable ${tookMs} ms after the kill`);
    // And node 1 still reads what node 3 wrote.
    await qemuIo(one.nbdUri("vm1"), ["read -P 0x12 65536 4096"]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("a node whose seed does not answer refuses writes and NBD, and says why", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-lonely-" });
  await Deno.writeTextFile(`${dir}/key`, crypto.randomUUID().replaceAll("-", ""));
  // A port that nothing listens on: the seed never answers.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadSeed = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  listener.close();
  const node = await startNode({
    args: [
      "--gossip",
      "127.0.0.1:0",
      "--cluster-key-file",
      `${dir}/key`,
      "--join",
      deadSeed,
      "--replicas",
      "3",
    ],
  });
  try {
    const ready = await node.fetch("/readyz");
    const readyBody = await ready.json();
    assert.equal(ready.status, 503);
    assert.match(readyBody.reason, /not joined/);
    assert.match(readyBody.reason, new RegExp(deadSeed));

    const create = await node.fetch("/v1/volumes", {
      method: "POST",
      body: JSON.stringify({ name: "alone", size: 4 * MiB }),
    });
    const createBody = await create.json();
    assert.equal(create.status, 503);
    assert.equal(create.headers.get("retry-after"), "1");
    assert.match(createBody.error, /not ready: not joined to a cluster yet/);

    const upload = await node.fetch("/v1/images/alone", {
      method: "PUT",
      body: new Uint8Array(4096),
    });
    await upload.body?.cancel();
    assert.equal(upload.status, 503);
    const listed = await node.fetch("/v1/volumes");
    await listed.body?.cancel();
    assert.notEqual(listed.status, 200, "no listing of a cluster it does not know");

    const info = await exec("qemu-img", ["info", node.nbdUri("alone")]);
    assert.notEqual(info.code, 0);
    assert.match(info.stderr, /not ready/);
  } finally {
    await node.kill9();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
});
