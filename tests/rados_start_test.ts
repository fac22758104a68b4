/**
 * Goal: librados is needed only by nodes that select the RADOS engine: such a
 * node without it stops at start with one clear line; a node on local files
 * never loads it. Method: real `atoll serve` processes with `ATOLL_LIBRADOS`
 * pointing at a library that does not exist.
 */
import assert from "node:assert/strict";
import { exec } from "./_nbd.ts";
import { removeData, startNode } from "./_node.ts";

const root = new URL("../", import.meta.url).pathname;
const missing = { ATOLL_LIBRADOS: "/nonexistent/librados.so.2" };

Deno.test("a node on RADOS without librados says so in one line and exits 1", async () => {
  const data = await Deno.makeTempDir({ prefix: "atoll-rados-start-" });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `${root}main.ts`,
        "serve",
        "--data",
        data,
        "--http",
        "127.0.0.1:0",
        "--nbd",
        "127.0.0.1:0",
        "--engine",
        "rados",
        "--ceph-conf",
        "/etc/ceph/ceph.conf",
        "--pool",
        "atoll",
      ],
      env: missing,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr).trim();
    assert.equal(output.code, 1);
    assert.equal(
      stderr,
      "atoll: Cannot use the RADOS engine: librados is not installed (apt-get install librados2)",
    );
  } finally {
    await Deno.remove(data, { recursive: true });
  }
});

Deno.test("a node on local files runs without librados", async () => {
  const node = await startNode({ env: missing });
  try {
    const created = await node.fetch("/v1/volumes", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "v", size: 1 << 20 }),
    });
    assert.equal(created.status, 201, await created.text());
    const out = await exec("qemu-io", ["-f", "raw", "-c", "write 0 4k", node.nbdUri("v")]);
    assert.equal(out.code, 0, out.stderr);
  } finally {
    await node.stop();
    await removeData(node);
  }
});
