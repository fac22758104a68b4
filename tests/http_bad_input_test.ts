/**
 * Goal: bad input gets the right 4xx and leaves the store consistent (DESIGN.md
 * invariant 5). Method: a real node process; invalid names, malformed JSON,
 * bodies cut short by a client that disconnects, a second concurrent upload of a
 * name, ranges past the end and missing or wrong tokens; after each, the node
 * still serves and a good upload of the same name works.
 */
import assert from "node:assert/strict";
import { patternBytes } from "./_files.ts";
import { removeData, startNode, type TestNode } from "./_node.ts";

const MiB = 1024 * 1024;

async function status(node: TestNode, path: string, init?: RequestInit): Promise<number> {
  const response = await node.fetch(path, init);
  await response.body?.cancel();
  return response.status;
}

/** Opens a raw connection and sends request headers for a PUT of `length` bytes. */
async function startRawUpload(node: TestNode, name: string, length: number) {
  const { hostname, port } = new URL(node.url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const head = `PUT /v1/images/${name} HTTP/1.1\r\nHost: ${hostname}\r\n` +
    `Content-Length: ${length}\r\n\r\n`;
  await conn.write(new TextEncoder().encode(head));
  return conn;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array) {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** Waits until the node reports no upload in progress. */
async function uploadsSettle(node: TestNode) {
  for (let i = 0; i < 200; i++) {
    const uploads = await (await node.fetch("/v1/uploads")).json();
    if (uploads.length === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assert.fail("an aborted upload is still listed");
}

Deno.test("invalid names and malformed requests get 400 and change nothing", async () => {
  const node = await startNode();
  try {
    const body = patternBytes(1000, 1);
    assert.equal(await status(node, "/v1/images/bad%20name", { method: "PUT", body }), 400);
    assert.equal(await status(node, `/v1/images/${"a".repeat(129)}`, { method: "PUT", body }), 400);
    assert.equal(await status(node, "/v1/images/.hidden", { method: "PUT", body }), 400);
    assert.equal(await status(node, "/v1/images/empty", { method: "PUT", body: "" }), 400);
    const emptyStream = new ReadableStream({ start: (controller) => controller.close() });
    assert.equal(
      await status(node, "/v1/images/empty", { method: "PUT", body: emptyStream }),
      400,
      "an empty chunked body is refused too",
    );
    const post = (json: string) => status(node, "/v1/volumes", { method: "POST", body: json });
    assert.equal(await post("{not json"), 400);
    assert.equal(await post("[1]"), 400);
    assert.equal(await post(JSON.stringify({ name: "../x", size: 4096 })), 400);
    assert.equal(await post(JSON.stringify({ name: "v", size: -1 })), 400);
    assert.equal(await post(JSON.stringify({ name: "v", size: 2 ** 60 })), 400);
    assert.equal(await post(JSON.stringify({ name: "v", image: "x", snapshot: "v@s" })), 400);
    assert.equal(await post(JSON.stringify({ name: "v", size: 4096 + 100 })), 400, "not sectors");
    assert.equal(await post(JSON.stringify({ name: "v", snapshot: "no-at-sign" })), 400);
    assert.equal(await post(JSON.stringify({ name: "v", image: "missing" })), 404);
    assert.equal(
      await post(JSON.stringify({ name: "v", size: 4096, pad: "x".repeat(70_000) })),
      413,
    );
    assert.equal(await post(JSON.stringify({ name: "v", size: 4096 })), 201);
    assert.equal(await post(JSON.stringify({ name: "v", size: 4096 })), 409);
    const snap = (json: string) =>
      status(node, "/v1/volumes/v/snapshots", { method: "POST", body: json });
    assert.equal(await snap(JSON.stringify({ name: "a/b" })), 400);
    assert.equal(await snap(JSON.stringify({})), 400);
    assert.equal(await status(node, "/v1/volumes/nope"), 404);
    assert.equal(await status(node, "/v1/nothing-here"), 404);
    const error = await (await node.fetch("/v1/images/bad%20name/info")).json();
    assert.match(error.error, /Cannot use image name/);
    assert.deepEqual(await (await node.fetch("/v1/images")).json(), []);
    assert.equal((await (await node.fetch("/v1/volumes")).json()).length, 1);
  } finally {
    await node.stop();
    await removeData(node);
  }
});

Deno.test("an upload whose client disconnects mid-body leaves no image", async () => {
  const node = await startNode();
  try {
    const conn = await startRawUpload(node, "cut", 64 * MiB);
    await writeAll(conn, patternBytes(10 * MiB, 2));
    conn.close();
    await uploadsSettle(node);
    assert.equal(await status(node, "/v1/images/cut/info"), 404);
    assert.deepEqual(await (await node.fetch("/v1/images")).json(), []);
    // The store is consistent: the blocks written are garbage, the name is free.
    const gc = await (await node.fetch("/v1/gc", { method: "POST" })).json();
    assert.equal(gc.liveBlocks, 0);
    const body = patternBytes(6 * MiB, 3);
    assert.equal(await status(node, "/v1/images/cut", { method: "PUT", body }), 201);
    const back = new Uint8Array(await (await node.fetch("/v1/images/cut")).arrayBuffer());
    assert.deepEqual(back, body);
  } finally {
    await node.stop();
    await removeData(node);
  }
});

Deno.test("a body shorter than its Content-Length is refused and stores nothing", async () => {
  const node = await startNode();
  try {
    const conn = await startRawUpload(node, "short", 8 * MiB);
    await writeAll(conn, patternBytes(5 * MiB, 4));
    await conn.closeWrite();
    const reply = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
    assert.match(reply, /^HTTP\/1.1 400/);
    assert.match(reply, /connection ended before the body did/);
    await uploadsSettle(node);
    assert.equal(await status(node, "/v1/images/short/info"), 404);
  } finally {
    await node.stop();
    await removeData(node);
  }
});

Deno.test("a second concurrent upload of one name gets 409 and the first completes", async () => {
  const node = await startNode();
  try {
    const body = patternBytes(9 * MiB, 5);
    const conn = await startRawUpload(node, "twice", body.length);
    await writeAll(conn, body.subarray(0, 5 * MiB));
    for (let i = 0; i < 100 && (await (await node.fetch("/v1/uploads")).json()).length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(await status(node, "/v1/images/twice", { method: "PUT", body }), 409);
    await writeAll(conn, body.subarray(5 * MiB));
    const reply = new TextDecoder().decode(
      (await conn.readable.getReader().read()).value ?? new Uint8Array(),
    );
    conn.close();
    assert.match(reply, /^HTTP\/1.1 201/);
    const back = new Uint8Array(await (await node.fetch("/v1/images/twice")).arrayBuffer());
    assert.deepEqual(back, body);
  } finally {
    await node.stop();
    await removeData(node);
  }
});

Deno.test("a Range past the end gets 416 with the size", async () => {
  const node = await startNode();
  try {
    const body = patternBytes(100_352, 6); // 196 sectors
    assert.equal(await status(node, "/v1/images/r", { method: "PUT", body }), 201);
    const past = await node.fetch("/v1/images/r", { headers: { range: "bytes=100352-" } });
    await past.body?.cancel();
    assert.equal(past.status, 416);
    assert.equal(past.headers.get("content-range"), "bytes */100352");
    const part = await node.fetch("/v1/images/r", { headers: { range: "bytes=100342-200000" } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), "bytes 100342-100351/100352");
    assert.deepEqual(new Uint8Array(await part.arrayBuffer()), body.subarray(100342));
  } finally {
    await node.stop();
    await removeData(node);
  }
});

Deno.test("with a token file, /v1 needs the bearer token and nothing else gets in", async () => {
  const dir = await Deno.makeTempDir();
  const token = "s3cret-token-0123456789";
  await Deno.writeTextFile(`${dir}/token`, token + "\n");
  const node = await startNode({ args: ["--token-file", `${dir}/token`] });
  try {
    const body = patternBytes(5120, 7);
    const put = (auth?: string) =>
      status(node, "/v1/images/t", {
        method: "PUT",
        body,
        headers: auth === undefined ? {} : { authorization: auth },
      });
    assert.equal(await put(), 401);
    assert.equal(await put("Bearer wrong-token-0123456789"), 401);
    assert.equal(await put(`Basic ${token}`), 401);
    assert.equal(await status(node, "/v1/images"), 401);
    assert.equal(await status(node, "/healthz"), 200);
    assert.equal(await put(`Bearer ${token}`), 201);
    const list = await node.fetch("/v1/images", { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await list.json()).length, 1);
  } finally {
    await node.stop();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
});
