/**
 * Goal: on RADOS, where a collection cannot ask the other nodes for their
 * uploads' pins, an upload that runs longer than the age rule loses no block
 * to a collection on another node: it keeps its blocks young while it runs,
 * and once more right before its record is written.
 * Method: two real node processes on the test Ceph (tests/_rados.ts), one
 * namespace, `--gc-min-age 1`; node 1 takes an upload whose body stops after
 * its first block; node 2 collects garbage 3 s later (the first block, stored
 * by then, is older than the rule and named by no record); then the body ends,
 * and the image is read back whole through node 2.
 */
import assert from "node:assert/strict";
import { MiB } from "./_nbd.ts";
import { startRadosNodes } from "./_rados.ts";
import { assertSameBytes, patternBytes } from "./_files.ts";

Deno.test("an upload longer than the age rule keeps its blocks from a collection elsewhere", async () => {
  const { nodes: [one, two], stop } = await startRadosNodes(2, [
    "--gc-min-age",
    "1",
    "--gc-settle",
    "0.2",
  ]);
  try {
    const image = patternBytes(8 * MiB, 77);
    let resume!: () => void;
    const paused = new Promise<void>((resolve) => resume = resolve);
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(image.slice(0, 4 * MiB));
        await paused;
        controller.enqueue(image.slice(4 * MiB));
        controller.close();
      },
    });
    const upload = one.fetch("/v1/images/slow", {
      method: "PUT",
      body,
      headers: { "content-length": String(image.length) },
    });
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const gc = await two.fetch("/v1/gc", { method: "POST" });
    assert.equal(gc.status, 200, await gc.text());
    resume();
    const response = await upload;
    assert.equal(response.status, 201, await response.text());
    const read = await two.fetch("/v1/images/slow");
    assert.equal(read.status, 200);
    assertSameBytes(new Uint8Array(await read.arrayBuffer()), image, "the image through node 2");
  } finally {
    await stop();
  }
});
