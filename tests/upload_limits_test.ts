/**
 * Goal: past its upload cap (`uploadsMax`), a node answers the extra uploads
 * 503 with Retry-After at once, without a stack trace in its log, while every
 * upload it took in completes whole.
 * Method: a real node process; 20 uploads start together from this process,
 * each body held back until the node runs as many uploads as it takes and the
 * rest were answered; then the bodies go, and the images are read back over
 * HTTP and compared by SHA-256.
 */
import assert from "node:assert/strict";
import { uploadsMax } from "../core/limits.ts";
import { bytesSha256, patternBytes, streamSha256 } from "./_files.ts";
import { MiB } from "./_nbd.ts";
import { eventually } from "./_cluster.ts";
import { removeData, startNode } from "./_node.ts";

const uploads = 20;

Deno.test("20 concurrent uploads: the extra ones get 503 with Retry-After, the others are whole", async () => {
  const node = await startNode();
  try {
    const images = Array.from({ length: uploads }, (_, i) => patternBytes(5 * MiB, 100 + i));
    const gate = Promise.withResolvers<void>();
    let answered = 0;
    const results = images.map(async (bytes, i) => {
      // Sent in two parts, the second once the gate opens: every upload is under way at once.
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          controller.enqueue(bytes.subarray(0, MiB));
          await gate.promise;
          controller.enqueue(bytes.subarray(MiB));
          controller.close();
        },
      });
      const response = await node.fetch(`/v1/images/up-${i}`, { method: "PUT", body });
      answered++;
      return {
        i,
        status: response.status,
        retryAfter: response.headers.get("retry-after"),
        text: await response.text(),
      };
    });
    await eventually("the node runs all the uploads it takes", async () => {
      const running = await (await node.fetch("/v1/uploads")).json() as unknown[];
      return running.length === uploadsMax && answered === uploads - uploadsMax;
    }, 20_000);
    gate.resolve();
    const done = await Promise.all(results);
    const refused = done.filter((result) => result.status === 503);
    const accepted = done.filter((result) => result.status === 201);
    assert.equal(accepted.length, uploadsMax, JSON.stringify(done));
    assert.equal(refused.length, uploads - uploadsMax, JSON.stringify(done));
    for (const result of refused) {
      assert.ok(Number(result.retryAfter) > 0, `503 without Retry-After: ${result.text}`);
      assert.match(JSON.parse(result.text).error, /uploads are running/);
    }
    for (const { i } of accepted) {
      const response = await node.fetch(`/v1/images/up-${i}`);
      assert.equal(response.status, 200);
      assert.equal(await streamSha256(response.body!), bytesSha256(images[i]), `image up-${i}`);
    }
    const stacks = node.log.filter((line) => /^\s+at /.test(line));
    assert.deepEqual(stacks, [], `stack traces in the log:\n${node.log.join("\n")}`);
  } finally {
    await node.stop();
    await removeData(node);
  }
});
