/**
 * AtollClient against an in-process fake node (Deno.serve on loopback): what it
 * sends, and how it turns answers and transport failures into errors.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ApiError, AtollClient, joinMessages } from "./client.ts";

interface Seen {
  method: string;
  path: string;
  headers: Headers;
  bodyBytes: number;
  json: unknown;
}

/** Serves `answer` for every request on a free loopback port, recording what came in. */
async function withFakeNode(
  answer: (seen: Seen) => Response | Promise<Response>,
  run: (url: string, seen: Seen[]) => Promise<void>,
): Promise<void> {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const bytes = new Uint8Array(await req.arrayBuffer());
    const url = new URL(req.url);
    let json: unknown = null;
    try {
      json = JSON.parse(new TextDecoder().decode(bytes));
    } catch { /* a raw body */ }
    const entry = {
      method: req.method,
      path: url.pathname + url.search,
      headers: req.headers,
      bodyBytes: bytes.length,
      json,
    };
    seen.push(entry);
    return await answer(entry);
  });
  try {
    await run(`http://127.0.0.1:${server.addr.port}/`, seen);
  } finally {
    await server.shutdown();
  }
}

const image = { name: "debian", size: 3, blockSize: 4, blocks: 1, zeroBlocks: 0, createdAt: "t" };

Deno.test("uploadImage() streams the file, reports bytes sent and whether it was new", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "image.raw");
  await Deno.writeFile(path, new Uint8Array(3 * 1024 * 1024 + 5).fill(1));
  try {
    let status = 201;
    await withFakeNode(
      () => Response.json({ ...image, newBlocks: 1, newBytes: 3 }, { status }),
      async (url, seen) => {
        const client = new AtollClient({ url, token: "t0ken" });
        const reports: number[] = [];
        const first = await client.uploadImage(path, "deb ian", (sent) => reports.push(sent));
        assert.equal(first.created, true);
        assert.equal(first.newBlocks, 1);
        status = 200;
        assert.equal((await client.uploadImage(path, "deb ian")).created, false);

        assert.equal(seen[0].method, "PUT");
        assert.equal(seen[0].path, "/v1/images/deb%20ian");
        assert.equal(seen[0].bodyBytes, 3 * 1024 * 1024 + 5);
        assert.equal(seen[0].headers.get("authorization"), "Bearer t0ken");
        // Deno's fetch sends a stream body chunked, whatever Content-Length says.
        assert.equal(seen[0].headers.get("transfer-encoding"), "chunked");
        assert.ok(reports.length > 1, "more than one progress report");
        assert.deepEqual(reports, reports.toSorted((a, b) => a - b));
        assert.equal(reports.at(-1), 3 * 1024 * 1024 + 5);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("uploadImage() names the file it cannot open", async () => {
  const client = new AtollClient({ url: "http://127.0.0.1:8080" });
  await assert.rejects(
    client.uploadImage("/nonexistent/image.raw", "x"),
    /^Error: Cannot upload image "x": cannot open \/nonexistent\/image\.raw: /,
  );
});

Deno.test("calls send JSON bodies and the cascade flag where the API wants them", async () => {
  await withFakeNode(
    (seen) => seen.method === "DELETE" ? new Response(null, { status: 204 }) : Response.json({}),
    async (url, seen) => {
      const client = new AtollClient({ url });
      await client.createVolume("vm1", { snapshot: "base@s1" });
      await client.createSnapshot("vm1", "s2");
      await client.deleteVolume("vm1", { cascade: true });
      await client.deleteSnapshot("vm1", "s2");
      assert.deepEqual(seen.map((entry) => `${entry.method} ${entry.path}`), [
        "POST /v1/volumes",
        "POST /v1/volumes/vm1/snapshots",
        "DELETE /v1/volumes/vm1?cascade=true",
        "DELETE /v1/volumes/vm1/snapshots/s2",
      ]);
      assert.deepEqual(seen[0].json, { name: "vm1", snapshot: "base@s1" });
      assert.deepEqual(seen[1].json, { name: "s2" });
      assert.equal(seen[0].headers.get("authorization"), null);
    },
  );
});

Deno.test("an error answer becomes an ApiError saying what was attempted and why", async () => {
  await withFakeNode(
    () => Response.json({ error: 'Cannot find image "nope": no such image' }, { status: 404 }),
    async (url) => {
      const client = new AtollClient({ url });
      await assert.rejects(client.createVolume("vm1", { image: "nope" }), (error: Error) => {
        assert.ok(error instanceof ApiError);
        assert.equal(error.status, 404);
        assert.equal(
          error.message,
          'Cannot create volume "vm1": cannot find image "nope": no such image',
        );
        return true;
      });
    },
  );
});

Deno.test("an error answer without JSON is shown by its status line", async () => {
  await withFakeNode(
    () => new Response("<html>oops</html>", { status: 502, statusText: "Bad Gateway" }),
    async (url) => {
      await assert.rejects(
        new AtollClient({ url }).listImages(),
        /^ApiError: Cannot list images: HTTP 502 Bad Gateway$/,
      );
    },
  );
});

Deno.test("a refused connection says the node cannot be reached", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${listener.addr.port}`;
  listener.close();
  await assert.rejects(
    new AtollClient({ url: url + "/" }).listVolumes(),
    (error: Error) => {
      assert.match(error.message, new RegExp(`^Cannot reach node at ${url}: .*refused`));
      assert.ok(!error.message.includes("error sending request"), error.message);
      return true;
    },
  );
});

Deno.test("a node that does not answer in time gives a timeout error", async () => {
  const release = Promise.withResolvers<void>();
  await withFakeNode(
    async () => {
      await release.promise;
      return Response.json([]);
    },
    async (url) => {
      const client = new AtollClient({ url, timeoutMs: 50 });
      await assert.rejects(
        client.uploads(),
        /^Error: Cannot list uploads: the node at .* did not answer within 0\.05 s$/,
      );
      release.resolve();
    },
  );
});

Deno.test("joinMessages() does not repeat the action and lowers a nested Cannot", () => {
  assert.equal(
    joinMessages('Cannot delete volume "a"', 'Cannot delete volume "a": busy'),
    'Cannot delete volume "a": busy',
  );
  assert.equal(
    joinMessages("Cannot list images", "Cannot authorize request: no token"),
    "Cannot list images: cannot authorize request: no token",
  );
  assert.equal(joinMessages("Cannot list images", "disk full"), "Cannot list images: disk full");
});
