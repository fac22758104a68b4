/**
 * The HTTP server on real loopback sockets, driven byte by byte: framing,
 * keep-alive, 100 Continue, bodies cut midway, caps and timeouts.
 */
import assert from "node:assert/strict";
import { type HttpHandler, HttpServer, type HttpServerOptions } from "./http_server.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs `body` against a server on a free port, then shuts it down. */
async function withServer(
  handler: HttpHandler,
  body: (port: number, server: HttpServer) => Promise<void>,
  options: Partial<HttpServerOptions> = {},
): Promise<void> {
  const server = HttpServer.listen({
    hostname: "127.0.0.1",
    port: 0,
    name: "test",
    handler,
    limits: { connectionsMax: 64, connectionsPerAddressMax: 64 },
    ...options,
  });
  try {
    await body(server.address.port, server);
  } finally {
    await server.shutdown();
  }
}

/** A raw client connection. */
async function connect(port: number, send = ""): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  if (send !== "") await conn.write(encoder.encode(send));
  return conn;
}

/** Everything the server sends until it closes the connection (or `limitMs` passes). */
async function readToEnd(conn: Deno.Conn, limitMs = 5_000): Promise<string> {
  const timer = setTimeout(() => conn.close(), limitMs);
  const chunks: string[] = [];
  const scratch = new Uint8Array(64 * 1024);
  try {
    for (let n; (n = await conn.read(scratch)) !== null;) {
      chunks.push(decoder.decode(scratch.subarray(0, n)));
    }
  } catch { /* reset, or closed by the timer */ }
  clearTimeout(timer);
  try {
    conn.close();
  } catch { /* closed */ }
  return chunks.join("");
}

/** Reads until the text received contains `pattern`. */
async function readUntil(conn: Deno.Conn, pattern: RegExp): Promise<string> {
  let text = "";
  const scratch = new Uint8Array(64 * 1024);
  while (!pattern.test(text)) {
    const n = await conn.read(scratch);
    if (n === null) break;
    text += decoder.decode(scratch.subarray(0, n));
  }
  return text;
}

const echo: HttpHandler = async (request) => {
  const text = request.body === null ? "" : await request.text();
  return new Response(`${request.method} ${new URL(request.url).pathname} ${text}`);
};

Deno.test("HttpServer answers pipelined requests on one connection in order, then closes on request", async () => {
  await withServer(echo, async (port) => {
    const conn = await connect(
      port,
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\n" +
        "PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
        "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    const text = await readToEnd(conn);
    const bodies = [...text.matchAll(/content-length: \d+\r\n(?:.*\r\n)*?\r\n([^H]*)/g)]
      .map((match) => match[1]);
    assert.deepEqual(bodies, ["GET /a ", "PUT /b hello", "GET /c "], text);
    assert.match(text, /connection: close\r\n/, "the last answer says it closes");
  });
});

Deno.test("HttpServer reads chunked bodies and sends a streamed body chunked", async () => {
  const handler: HttpHandler = async (request) => {
    const text = await request.text();
    const parts = [text, "-", "end"];
    return new Response(
      new ReadableStream({
        pull: (controller) => {
          const part = parts.shift();
          if (part === undefined) controller.close();
          else controller.enqueue(encoder.encode(part));
        },
      }),
    );
  };
  await withServer(handler, async (port) => {
    const conn = await connect(
      port,
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
    );
    const text = await readToEnd(conn);
    assert.match(text, /transfer-encoding: chunked/);
    assert.ok(text.endsWith("\r\n\r\nb\r\nhello world\r\n1\r\n-\r\n3\r\nend\r\n0\r\n\r\n"), text);
  });
});

Deno.test("HttpServer sends 100 Continue only once the handler reads the body", async () => {
  const handler: HttpHandler = async (request) => {
    if (new URL(request.url).pathname === "/busy") {
      return Response.json({ error: "busy" }, { status: 503, headers: { "retry-after": "1" } });
    }
    return new Response(await request.text());
  };
  await withServer(handler, async (port) => {
    const head = (path: string) =>
      `PUT ${path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n`;
    const reading = await connect(port, head("/read"));
    assert.match(await readUntil(reading, /100 Continue\r\n\r\n/), /^HTTP\/1.1 100 Continue/);
    await reading.write(encoder.encode("body"));
    assert.match(await readUntil(reading, /\r\n\r\nbody$/), /^HTTP\/1.1 200 OK/);
    reading.close();

    const refusing = await connect(port, head("/busy"));
    const text = await readToEnd(refusing);
    assert.match(text, /^HTTP\/1.1 503 /, "the answer comes without a 100 first");
    assert.match(text, /retry-after: 1\r\n/);
    assert.match(text, /connection: close\r\n/, "the unread body ends the connection");
  });
});

Deno.test("HttpServer cuts a response whose body fails midway instead of ending it", async () => {
  const handler: HttpHandler = () => {
    let sent = false;
    const body = new ReadableStream({
      pull(controller) {
        if (sent) return controller.error(new Error("Cannot read block 3: gone"));
        sent = true;
        controller.enqueue(new Uint8Array(1000));
      },
    });
    return new Response(body, { headers: { "content-length": "5000" } });
  };
  await withServer(handler, async (port) => {
    const text = await readToEnd(await connect(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.match(text, /^HTTP\/1.1 200 OK\r\n/);
    assert.equal(text.length - text.indexOf("\r\n\r\n") - 4, 1000, "closed after the bytes read");
  });
});

Deno.test("HttpServer answers malformed and oversized heads with 4xx and closes", async () => {
  await withServer(echo, async (port) => {
    const malformed = await readToEnd(await connect(port, "NONSENSE\r\n\r\n"));
    assert.match(malformed, /^HTTP\/1.1 400 /);
    const big = await connect(port, `GET / HTTP/1.1\r\nX: ${"a".repeat(70_000)}`);
    assert.match(await readToEnd(big), /^HTTP\/1.1 431 /);
    const smuggled = await readToEnd(
      await connect(
        port,
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      ),
    );
    assert.match(smuggled, /^HTTP\/1.1 400 /);
  });
});

Deno.test("HttpServer closes a connection that sends no whole head in time, and an idle one", async () => {
  await withServer(echo, async (port) => {
    const started = performance.now();
    const slow = await connect(port, "GET / HTTP/1.1\r\nHost");
    assert.equal(await readToEnd(slow), "", "closed without an answer");
    const slowMs = performance.now() - started;
    assert.ok(slowMs >= 280 && slowMs < 2_000, `closed after ${slowMs} ms`);

    const idle = await connect(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await readUntil(idle, /GET \/ $/);
    const answered = performance.now();
    assert.equal(await readToEnd(idle), "");
    const idleMs = performance.now() - answered;
    assert.ok(idleMs >= 450 && idleMs < 2_500, `idle connection closed after ${idleMs} ms`);
  }, { timeouts: { headerTimeoutMs: 300, idleTimeoutMs: 500 } });
});

Deno.test("HttpServer refuses connections past the per-address cap with 503", async () => {
  await withServer(echo, async (port) => {
    const held = [await connect(port), await connect(port)];
    const refused = await readToEnd(await connect(port));
    assert.match(refused, /^HTTP\/1.1 503 /);
    assert.match(refused, /retry-after: 1\r\n/);
    held[0].close();
    // The first one's place is free again once the server saw it close.
    let text = "";
    for (let attempt = 0; attempt < 50 && !/^HTTP\/1.1 200/.test(text); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      text = await readToEnd(await connect(port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    }
    assert.match(text, /^HTTP\/1.1 200 /);
    held[1].close();
  }, { limits: { connectionsMax: 64, connectionsPerAddressMax: 2 } });
});

Deno.test("HttpServer.shutdown() closes idle connections and lets a request under way finish", async () => {
  const release = Promise.withResolvers<void>();
  const handler: HttpHandler = async () => {
    await release.promise;
    return new Response("finished");
  };
  const server = HttpServer.listen({
    hostname: "127.0.0.1",
    port: 0,
    name: "test",
    handler,
    limits: { connectionsMax: 64, connectionsPerAddressMax: 64 },
  });
  const idle = await connect(server.address.port);
  const busy = await connect(server.address.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  await new Promise((resolve) => setTimeout(resolve, 50));
  const stopped = server.shutdown();
  assert.equal(await readToEnd(idle), "", "the idle connection is closed at once");
  release.resolve();
  const text = await readToEnd(busy);
  assert.match(text, /^HTTP\/1.1 200 OK\r\n/);
  assert.match(text, /connection: close\r\n/);
  assert.ok(text.endsWith("finished"));
  await stopped;
  await server.finished;
});

Deno.test("HttpServer at a cap closes the connection kept alive longest instead of refusing", async () => {
  await withServer(echo, async (port) => {
    const kept = await connect(port, "GET /kept HTTP/1.1\r\nHost: x\r\n\r\n");
    await readUntil(kept, /GET \/kept $/);
    const fresh = await connect(port); // no request yet: not idle after a request, never evicted
    await new Promise((resolve) => setTimeout(resolve, 50));
    const text = await readToEnd(
      await connect(port, "GET /new HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert.match(text, /^HTTP\/1.1 200 OK/, "the new connection is served");
    assert.equal(await readToEnd(kept), "", "the kept-alive one was closed for it");
    await fresh.write(encoder.encode("GET /fresh HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert.match(await readToEnd(fresh), /GET \/fresh $/, "the fresh one is served still");
  }, { limits: { connectionsMax: 64, connectionsPerAddressMax: 2 } });
});
