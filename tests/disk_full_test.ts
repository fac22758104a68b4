/**
 * Goal: a full data disk loses nothing and costs nothing once the failure is
 * over. An upload larger than the free space answers 507 with a clear
 * message, the blocks it stored are freed at once (no `POST /v1/gc`), the
 * node stays up, and a small upload, a clone and an NBD write then succeed.
 * Method: a real node whose data directory is a small tmpfs (mounted by the
 * test, as root), free space read with statfs before and after.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import { patternBytes } from "./_files.ts";
import { createVolume, exec, MiB, uploadImage, volumeBytes } from "./_nbd.ts";
import { startNode } from "./_node.ts";

const tmpfsBytes = 48 * MiB;

function freeBytes(dir: string): number {
  const stats = fs.statfsSync(dir);
  return stats.bavail * stats.bsize;
}

Deno.test("an upload larger than the disk gets 507 and gives its space back at once", async () => {
  const data = await Deno.makeTempDir({ prefix: "atoll-full-" });
  const mount = await exec("mount", ["-t", "tmpfs", "-o", `size=${tmpfsBytes}`, "tmpfs", data]);
  assert.equal(mount.code, 0, `mount tmpfs (the test runs as root): ${mount.stderr}`);
  try {
    const node = await startNode({ data });
    try {
      const freeBefore = freeBytes(data);
      const response = await node.fetch("/v1/images/too-big", {
        method: "PUT",
        body: patternBytes(80 * MiB, 7),
      });
      const body = await response.json();
      assert.equal(response.status, 507, JSON.stringify(body));
      assert.match(body.error, /data disk is full/);
      // The space comes back without a collection asked for.
      let free = freeBytes(data);
      for (let i = 0; i < 50 && free < freeBefore - 2 * MiB; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        free = freeBytes(data);
      }
      assert.ok(
        free >= freeBefore - 2 * MiB,
        `free ${free} bytes after the failed upload, ${freeBefore} before`,
      );
      const images = await (await node.fetch("/v1/images")).json();
      assert.deepEqual(images, [], "no image of the failed upload");

      const small = patternBytes(12 * MiB, 8);
      await uploadImage(node, "small", small);
      await createVolume(node, "vm1", { image: "small" });
      const write = await node.fetch("/v1/volumes/vm1/data?offset=0", {
        method: "PATCH",
        body: patternBytes(MiB, 9),
      });
      assert.ok(write.ok, await write.text());
      const expected = small.slice();
      expected.set(patternBytes(MiB, 9), 0);
      assert.deepEqual(await volumeBytes(node, "vm1"), expected);
      assert.equal(
        node.log.filter((line) => /^\s+at /.test(line)).length,
        0,
        "no stack trace in the log",
      );
    } finally {
      await node.stop();
    }
  } finally {
    await exec("umount", [data]);
    await Deno.remove(data, { recursive: true });
  }
});
