/**
 * Goal: calls over links reach their method and come back with their own
 * reply, many at once on one link; a restarted peer, a link closed by the
 * peer, and a link that went silent are each survived by the next call; a call
 * whose peer stops answering fails as unreachable at its timeout; the cluster
 * port still answers sealed HTTP.
 * Method: a cluster port on loopback (real sockets); a TCP relay in between
 * where a test needs to watch the bytes, cut the connections, or drop every
 * byte (a peer gone without closing).
 */
import assert from "node:assert/strict";
import { MemoryIdentity } from "./identity.ts";
import { LinkClient } from "./link_client.ts";
import { RpcClient } from "./rpc_client.ts";
import { rpcServer } from "./rpc.ts";
import { HttpServer } from "../../net/mod.ts";
import { faults, RpcError } from "./rpc_message.ts";
import { eventually, key, Relay, startPort } from "../../tests/_link_proxy.ts";

function client(
  options: { probeTimeoutMs?: number; handshakeTimeoutMs?: number } = {},
): LinkClient {
  return new LinkClient(key, new MemoryIdentity(), { selfId: "client", ...options });
}

/** Calls `echo` at a peer that was silent until a call goes through (the client checks it every second). */
async function answeredAgain(links: LinkClient, address: string, value: number) {
  const started = performance.now();
  for (;;) {
    const reply = await links.call(address, "echo", { header: { value } }).catch((error) => {
      if (performance.now() - started > 10_000) throw error;
      return null;
    });
    if (reply !== null) return reply;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("LinkClient.call() reaches a method and returns its header and data; errors keep their name", async () => {
  const server = startPort();
  const links = client();
  try {
    const data = new Uint8Array([1, 2, 3]);
    const reply = await links.call(server.address, "echo", { header: { value: 42 }, data });
    assert.equal(reply.header.got, 42);
    assert.deepEqual(reply.data, data);
    const large = new Uint8Array(4 << 20).map((_, i) => i % 251);
    assert.deepEqual(
      (await links.call(server.address, "echo", { header: {}, data: large })).data,
      large,
    );
    const failed = await links.call(server.address, "fail").catch((error) => error);
    assert.ok(failed instanceof RpcError);
    assert.equal(failed.remoteName, "RangeError");
    assert.equal(failed.unreachable, false);
    assert.match(failed.message, /no such thing/);
    await assert.rejects(links.call(server.address, "nope"), /unknown method nope/);
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("large calls to methods that keep no data are read into reused buffers; others into their own", async () => {
  const seen: Record<string, ArrayBufferLike[]> = { keep: [], own: [] };
  const sum = (data: Uint8Array) => data.reduce((total, byte) => (total + byte) % 65521, 0);
  const method = (name: string) => (request: { data?: Uint8Array }) => {
    seen[name].push(request.data!.buffer);
    return { header: { sum: sum(request.data!) } };
  };
  const server = startPort({
    methods: { keep: method("keep"), own: method("own") },
    pooledData: new Set(["keep"]),
  });
  const links = client();
  try {
    for (let i = 0; i < 4; i++) {
      for (const name of ["keep", "own"]) {
        const data = new Uint8Array(1 << 20).map((_, j) => (i * 31 + j) % 253);
        const reply = await links.call(server.address, name, { header: {}, data });
        assert.equal(reply.header.sum, sum(data), `${name} #${i} read its own bytes`);
      }
    }
    assert.ok(new Set(seen.keep).size < 4, "a pooled body is used again once answered");
    assert.equal(new Set(seen.own).size, 4, "the others get a buffer each");
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("a pooled call's data a method keeps past its answer is not reused until let go", async () => {
  const buffers: ArrayBufferLike[] = [];
  const held: Uint8Array[] = [];
  const letGo = Promise.withResolvers<void>();
  const server = startPort({
    methods: {
      hold: (request) => {
        buffers.push(request.data!.buffer);
        if (held.length === 0) request.keep!(letGo.promise); // the first call's data only
        held.push(request.data!);
        return { header: {} };
      },
    },
    pooledData: new Set(["hold"]),
  });
  const links = client();
  const bytes = (i: number) => new Uint8Array(1 << 20).fill(i + 1);
  try {
    for (let i = 0; i < 4; i++) {
      await links.call(server.address, "hold", { data: bytes(i), header: {} });
    }
    assert.ok(held[0].every((byte) => byte === 1), "the kept data is as it arrived");
    assert.ok(!buffers.slice(1).includes(buffers[0]), "no later call was read into it");
    assert.ok(new Set(buffers.slice(1)).size < 3, "the others' buffers are used again");
    letGo.resolve();
    await new Promise((resolve) => setTimeout(resolve, 0)); // the release follows in microtasks
    for (let i = 4; i < 7; i++) {
      await links.call(server.address, "hold", { data: bytes(i), header: {} });
    }
    assert.ok(buffers.slice(4).includes(buffers[0]), "once let go, it is used again");
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("a reply of a call made with pooledReply is read into a buffer reused once released", async () => {
  const server = startPort();
  const links = client();
  try {
    const buffers: ArrayBufferLike[] = [];
    for (let i = 0; i < 4; i++) {
      const data = new Uint8Array(1 << 20).map((_, j) => (i * 7 + j) % 249);
      const reply = await links.call(server.address, "echo", { header: {}, data }, undefined, {
        pooledReply: true,
      });
      assert.deepEqual(reply.data, data, `reply #${i}`);
      assert.ok(reply.release !== undefined);
      buffers.push(reply.data!.buffer);
      reply.release();
      reply.release(); // a second release is harmless
    }
    assert.ok(new Set(buffers).size < 4, "a released buffer takes a later reply");
    const plain = await links.call(server.address, "echo", {
      header: {},
      data: new Uint8Array(1 << 20),
    });
    assert.equal(plain.release, undefined, "without pooledReply, a buffer of its own");
    // A small reply too (a new buffer costs more than copying 4 KiB).
    const sent = new Uint8Array(100).map((_, j) => j);
    const small = await links.call(server.address, "echo", { header: {}, data: sent }, undefined, {
      pooledReply: true,
    });
    assert.deepEqual(small.data, sent);
    assert.ok(small.release !== undefined, "a small reply is pooled too");
    assert.ok(buffers.every((buffer) => buffer !== small.data!.buffer), "a class of its size");
    small.release();
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("many concurrent calls on one link each get their own reply", async () => {
  const server = startPort();
  const links = client();
  try {
    const calls = Array.from({ length: 400 }, (_, i) =>
      links.call(server.address, "echo", {
        header: { value: i, delayMs: (i * 7) % 13 }, // replies come back out of order
        data: new Uint8Array([i & 0xff, i >> 8]),
      }));
    const replies = await Promise.all(calls);
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.header.got, i);
      assert.deepEqual(reply.data, new Uint8Array([i & 0xff, i >> 8]));
    }
    assert.equal(server.links.connections, 1, "one link carried them all");
    assert.equal(server.echoes, 400);
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("calls and replies of no data, read in place from the link's buffer, each keep their own header", async () => {
  const server = startPort();
  const links = client();
  try {
    // Many frames to a read, out of order, dataless ones between ones with data.
    const calls = Array.from({ length: 600 }, (_, i) =>
      links.call(server.address, "echo", {
        header: { value: i, delayMs: (i * 5) % 7, pad: "x".repeat(i % 97) },
        data: i % 3 === 0 ? new Uint8Array([i & 0xff]) : undefined,
      }));
    const replies = await Promise.all(calls);
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.header.got, i);
      assert.deepEqual(reply.data, i % 3 === 0 ? new Uint8Array([i & 0xff]) : new Uint8Array());
    }
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("a restarted peer is called again transparently: the next call opens a new link", async () => {
  const first = startPort();
  const port = Number(first.address.split(":")[1]);
  const links = client();
  let second: ReturnType<typeof startPort> | null = null;
  try {
    assert.equal((await links.call(first.address, "echo", { header: { value: 1 } })).header.got, 1);
    await first.stop();
    second = startPort({ port });
    assert.equal((await links.call(first.address, "echo", { header: { value: 2 } })).header.got, 2);
    assert.equal(second.echoes, 1);
  } finally {
    await links.close();
    await second?.stop();
  }
});

Deno.test("a call whose link dies fails as unreachable; the next call opens a new link", async () => {
  const server = startPort();
  const relay = new Relay(Number(server.address.split(":")[1]));
  const links = client();
  try {
    await links.call(relay.address, "echo");
    const slow = links.call(relay.address, "echo", { header: { delayMs: 300 } });
    await eventually("the slow call arrived", () => server.echoes === 2);
    relay.cut();
    const error = await slow.catch((error) => error);
    assert.ok(error instanceof RpcError && error.unreachable, String(error));
    assert.equal((await links.call(relay.address, "echo", { header: { value: 3 } })).header.got, 3);
    assert.equal(relay.toServer.length, 2, "a second link");
  } finally {
    await links.close();
    await relay.close();
    await server.stop();
  }
});

Deno.test("a call times out when the peer stops answering, and a link silent even to a ping is closed", async () => {
  const server = startPort();
  const relay = new Relay(Number(server.address.split(":")[1]));
  const links = client({ probeTimeoutMs: 300, handshakeTimeoutMs: 300 });
  try {
    await links.call(relay.address, "echo");
    relay.silent = true; // the peer is gone, its connection still open
    const started = performance.now();
    const error = await links.call(relay.address, "echo", { header: {} }, 200).catch((error) =>
      error
    );
    const waitedMs = performance.now() - started;
    assert.ok(error instanceof RpcError && error.unreachable, String(error));
    assert.match(error.message, /no answer within 200 ms/);
    assert.ok(waitedMs >= 190 && waitedMs < 1000, `timed out after ${waitedMs} ms`);
    // Nothing came back since the call, not even to the ping: the link is dropped,
    // and the peer counts as silent: a call fails at once, without its timeout.
    await eventually("the client dropped the link", () => server.links.connections === 0);
    const fast = await links.call(relay.address, "echo", { header: {} }, 60_000).catch((e) => e);
    assert.ok(fast instanceof RpcError && fast.unreachable, String(fast));
    assert.match(
      fast.message,
      /silent for [0-9.]+ s \(no answer, not even to a ping or a handshake/,
    );
    // Checked every second with a new link's handshake: once the peer answers, calls go through.
    relay.silent = false;
    assert.equal((await answeredAgain(links, relay.address, 4)).header.got, 4);
    assert.ok(relay.toServer.length >= 2, "a new link");
  } finally {
    await links.close();
    await relay.close();
    await server.stop();
  }
});

Deno.test("a peer that takes connections but gives no handshake is silent: later calls fail at once", async () => {
  const server = startPort();
  const relay = new Relay(Number(server.address.split(":")[1]));
  const links = client({ handshakeTimeoutMs: 300 });
  try {
    relay.silent = true; // a stopped process, or a host that drops everything
    const first = await links.call(relay.address, "echo", { header: {} }, 60_000).catch((e) => e);
    assert.ok(first instanceof RpcError && first.unreachable, String(first));
    assert.match(first.message, /no handshake within 300 ms/);
    const next = await links.call(relay.address, "echo", { header: {} }, 60_000).catch((e) => e);
    assert.ok(next instanceof RpcError && next.unreachable, String(next));
    assert.match(next.message, /silent for [0-9.]+ s/);
    relay.silent = false;
    assert.equal((await answeredAgain(links, relay.address, 5)).header.got, 5);
  } finally {
    await links.close();
    await relay.close();
    await server.stop();
  }
});

Deno.test("a call that times out before its frame is all sent closes its link: the rest never goes out", async () => {
  const server = startPort();
  const relay = new Relay(Number(server.address.split(":")[1]));
  const links = client();
  try {
    await links.call(relay.address, "echo");
    relay.paused = Promise.withResolvers();
    const data = new Uint8Array(32 << 20); // more than the sockets between them buffer
    const error = await links.call(relay.address, "echo", { header: {}, data }, 300)
      .catch((error) => error);
    assert.ok(error instanceof RpcError && error.unreachable, String(error));
    relay.paused.resolve();
    relay.paused = null;
    await eventually("the link closed", () => server.links.connections === 0);
    assert.equal(server.echoes, 1, "the cut call never ran");
    assert.ok(relay.toServer[0].reduce((sum, chunk) => sum + chunk.length, 0) < data.length);
    assert.equal((await links.call(relay.address, "echo", { header: { value: 9 } })).header.got, 9);
  } finally {
    await links.close();
    await relay.close();
    await server.stop();
  }
});

Deno.test("the server closes an idle link; the client's next call opens a new one", async () => {
  const server = startPort({ idleTimeoutMs: 100 });
  const links = client();
  try {
    await links.call(server.address, "echo");
    await eventually("the idle link closed", () => server.links.connections === 0);
    assert.equal(
      (await links.call(server.address, "echo", { header: { value: 5 } })).header.got,
      5,
    );
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("the cluster port still serves sealed HTTP requests next to links", async () => {
  const server = startPort();
  try {
    const sealed = new RpcClient(key, new MemoryIdentity());
    const reply = await sealed.call(server.address, "echo", { header: { value: 6 } });
    assert.equal(reply.header.got, 6);
  } finally {
    await server.stop();
  }
});

Deno.test("an isolated node fails its calls at once as unreachable", async () => {
  const server = startPort();
  const links = client();
  const isolated = faults.isolated;
  try {
    faults.isolated = () => true;
    const error = await links.call(server.address, "echo").catch((error) => error);
    assert.ok(error instanceof RpcError && error.unreachable);
    assert.match(error.message, /isolated/);
    assert.equal(server.echoes, 0);
  } finally {
    faults.isolated = isolated;
    await links.close();
    await server.stop();
  }
});

Deno.test("a peer that serves sealed HTTP only (an earlier version) is called through the fallback", async () => {
  let echoes = 0;
  const identity = new MemoryIdentity();
  const old = HttpServer.listen({
    hostname: "127.0.0.1",
    port: 0,
    name: "old",
    limits: { connectionsMax: 16, connectionsPerAddressMax: 16 },
    handler: rpcServer(key, identity, {
      echo: (request) => ({ header: { got: request.header.value, echoes: ++echoes } }),
    }),
  });
  const address = `127.0.0.1:${old.address.port}`;
  const fallback = new RpcClient(key, new MemoryIdentity());
  const links = new LinkClient(key, new MemoryIdentity(), { selfId: "new", fallback });
  const bare = client();
  try {
    assert.equal((await links.call(address, "echo", { header: { value: 7 } })).header.got, 7);
    assert.equal((await links.call(address, "echo", { header: { value: 8 } })).header.got, 8);
    assert.equal(echoes, 2);
    const error = await bare.call(address, "echo").catch((error) => error);
    assert.ok(error instanceof RpcError, String(error));
    assert.match(error.message, /answered in HTTP/);
  } finally {
    await links.close();
    await bare.close();
    await old.shutdown();
  }
});
