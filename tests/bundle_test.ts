/**
 * Goal: `deno task bundle` makes one runnable file that is a whole node, hash
 * workers included. Method: bundle main.ts into a temporary directory, copy the
 * file alone into an empty directory, start a node from it there, upload an
 * image (hashed in the bundle's own workers) and read it back, read its
 * /metrics (prom-client bundled) and its dashboard (page and modules bundled).
 */
import assert from "node:assert/strict";
import { patternBytes, run } from "./_files.ts";
import { removeData, startNode } from "./_node.ts";

const root = new URL("../", import.meta.url).pathname;

Deno.test("the bundled single file runs a node whose hash workers work", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-bundle-" });
  await run(Deno.execPath(), [
    "bundle",
    "--quiet",
    "--output",
    `${dir}/build/atoll.js`,
    `${root}main.ts`,
  ]);
  await Deno.mkdir(`${dir}/alone`);
  await Deno.copyFile(`${dir}/build/atoll.js`, `${dir}/alone/atoll.js`);
  const help = await run(Deno.execPath(), ["run", "-A", `${dir}/alone/atoll.js`, "--help"]);
  assert.match(help, /atoll serve/);
  const node = await startNode({ entry: `${dir}/alone/atoll.js`, cwd: `${dir}/alone` });
  try {
    const image = new Uint8Array(10 * 1024 * 1024);
    image.set(patternBytes(4 * 1024 * 1024, 1));
    image.set(patternBytes(1024, 2), 9 * 1024 * 1024);
    const put = await node.fetch("/v1/images/bundled", { method: "PUT", body: image });
    const result = await put.json();
    assert.equal(put.status, 201, JSON.stringify(result));
    assert.deepEqual([result.blocks, result.zeroBlocks, result.newBlocks], [3, 1, 2]);
    const back = new Uint8Array(await (await node.fetch("/v1/images/bundled")).arrayBuffer());
    assert.deepEqual(back, image);
    // prom-client (an npm package in CommonJS) works from the bundle too.
    const metrics = await (await node.fetch("/metrics")).text();
    assert.match(metrics, /^atoll_upload_bytes_total 10485760$/m);
    assert.match(metrics, /^process_cpu_seconds_total \d/m);
    // The dashboard's page and modules are in the file too (imported as text).
    const page = await node.fetch("/");
    assert.match(await page.text(), /<script type="module" src="ui\/app.js">/);
    for (const file of ["app.js", "views.js", "columns.js", "table.js", "style.css"]) {
      const response = await node.fetch(`/ui/${file}`);
      assert.equal(response.status, 200, file);
      assert.ok((await response.text()).length > 500, file);
    }
  } finally {
    await node.stop();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
});
