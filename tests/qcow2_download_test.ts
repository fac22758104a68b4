/**
 * Goal: an image or a snapshot downloads as a qcow2 file (`?format=qcow2`)
 * that QEMU finds consistent (tables, refcounts, no leaks) and reads as the
 * disk, Range requests included; zero blocks take no space in it, so a 5 TiB
 * disk holding 4 MiB uploads (as qcow2) and downloads in seconds.
 * Method: a real node; sparse disks made by qemu-img and qemu-io, uploaded as
 * qcow2 over HTTP; `qemu-img check` and `qemu-img compare` of the downloads.
 */
import assert from "node:assert/strict";
import { bytesSha256, patternBytes, run } from "./_files.ts";
import { type TestNode } from "./_node.ts";
import { createSnapshot, createVolume, MiB, withNode } from "./_nbd.ts";

/** PUTs `body` as image `name`; returns the status and the parsed JSON answer. */
async function put(
  node: TestNode,
  name: string,
  body: BodyInit,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await node.fetch(`/v1/images/${name}`, { method: "PUT", body });
  return { status: response.status, json: await response.json() };
}

Deno.test("images and snapshots download as qcow2 files that qemu-img checks clean and reads back", async () => {
  await withNode(async ({ node, dir }) => {
    // 1.5 GiB, mostly holes: data in three L1 spans (512 MiB each) and a short tail.
    const source = `${dir}/sparse.raw`;
    await run("qemu-img", ["create", "-q", "-f", "raw", source, `${1536 * MiB + 37 * 512}`]);
    for (const [at, seed] of [[0, 1], [600 * MiB + 4096, 2], [1536 * MiB, 3]]) {
      const bytes = patternBytes(seed === 3 ? 37 * 512 : 3 * MiB, seed);
      const file = await Deno.open(source, { write: true });
      await file.seek(at, Deno.SeekMode.Start);
      await file.write(bytes);
      file.close();
    }
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", source, `${dir}/sparse.qcow2`]);
    const uploaded = await put(node, "sparse", await Deno.readFile(`${dir}/sparse.qcow2`));
    assert.equal(uploaded.status, 201, JSON.stringify(uploaded.json));
    await createVolume(node, "vm", { image: "sparse" });
    await createSnapshot(node, "vm", "s1");

    for (
      const [what, path] of [["image", "/v1/images/sparse"], [
        "snapshot",
        "/v1/volumes/vm/snapshots/s1/data",
      ]]
    ) {
      const response = await node.fetch(`${path}?format=qcow2`);
      assert.equal(response.status, 200);
      const file = `${dir}/${what}.qcow2`;
      const bytes = new Uint8Array(await response.arrayBuffer());
      assert.equal(Number(response.headers.get("content-length")), bytes.length);
      await Deno.writeFile(file, bytes);
      // Refcounts, tables and leaks as QEMU sees them; then the disk itself.
      await run("qemu-img", ["check", "-q", "-f", "qcow2", file]);
      await run("qemu-img", ["compare", "-q", "-f", "raw", "-F", "qcow2", source, file]);
      assert.ok(bytes.length < 16 * MiB, `${what}: holes take no space (${bytes.length} bytes)`);
      // A range of the file is that range of the whole.
      const part = await node.fetch(`${path}?format=qcow2`, {
        headers: { range: "bytes=100000-3000000" },
      });
      assert.equal(part.status, 206);
      assert.equal(
        bytesSha256(new Uint8Array(await part.arrayBuffer())),
        bytesSha256(bytes.subarray(100000, 3000001)),
      );
    }
    // Uploaded again, the downloaded file is the same disk: no new block.
    const again = await put(node, "again", await Deno.readFile(`${dir}/image.qcow2`));
    assert.equal(again.status, 201);
    assert.equal(again.json.newBlocks, 0);
    const bad = await node.fetch("/v1/images/sparse?format=vmdk");
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
  });
});

Deno.test("a 5 TiB qcow2 holding 4 MiB of data uploads and downloads as what it holds", async () => {
  await withNode(async ({ node, dir }) => {
    // Goal: zero runs travel by length both ways (the upload and the download cost the
    // data, not the virtual size); a two-cluster L1 table on the way out.
    const file = `${dir}/big.qcow2`;
    await run("qemu-img", ["create", "-q", "-f", "qcow2", file, "5T"]);
    for (const command of ["write -P 0x11 0 1M", "write -P 0x22 3T 1M", "write -P 0x33 5119G 2M"]) {
      await run("qemu-io", ["-f", "qcow2", "-c", command, file]);
    }
    const { status, json } = await put(node, "big", await Deno.readFile(file));
    assert.equal(status, 201, JSON.stringify(json));
    assert.equal(json.size, 5 * 1024 ** 4);
    assert.equal(json.newBlocks, 3);
    const response = await node.fetch("/v1/images/big?format=qcow2");
    assert.equal(response.status, 200);
    await Deno.writeFile(`${dir}/down.qcow2`, new Uint8Array(await response.arrayBuffer()));
    await run("qemu-img", ["check", "-q", "-f", "qcow2", `${dir}/down.qcow2`]);
    await run("qemu-img", [
      "compare",
      "-q",
      "-f",
      "qcow2",
      "-F",
      "qcow2",
      file,
      `${dir}/down.qcow2`,
    ]);
  });
});
