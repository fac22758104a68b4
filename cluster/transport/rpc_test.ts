/**
 * Goal: sealed calls reach their method; captured requests and replies cannot be
 * replayed; a server restart costs one transparent hello; a peer whose clock is
 * 10 minutes off, or who belongs to another cluster, is refused with that reason.
 * Method: real HTTP on loopback; a "restart" swaps in a fresh rpcServer (a new
 * session table) behind the same port; skew is the client's wall clock shifted.
 */
import assert from "node:assert/strict";
import { ClusterKey, type RefusalReason } from "./auth.ts";
import { MemoryIdentity, newClusterId } from "./identity.ts";
import { RpcClient, RpcError, type RpcOptions, rpcServer } from "./rpc.ts";

const key = new ClusterKey(new TextEncoder().encode("cluster-key-".repeat(4)));
const stranger = new ClusterKey(new TextEncoder().encode("another-key-".repeat(4)));
const minuteMs = 60_000;

interface TestServer {
  address: string;
  /** Every request body received, in order. */
  bodies: Uint8Array<ArrayBuffer>[];
  /** Every reply body sent, in order. */
  replies: Uint8Array<ArrayBuffer>[];
  /** Calls of the method "echo" that ran. */
  echoes: () => number;
  /** Reasons of the requests the server refused. */
  refused: RefusalReason[];
  /** A new server process behind the same port: it knows no session. */
  restart(): void;
  /** Answers the next request with `response` instead of the server's. */
  answerNextWith(response: Response): void;
}

async function withServer(
  fn: (server: TestServer) => Promise<void>,
  identity = new MemoryIdentity(),
) {
  const refused: RefusalReason[] = [];
  let echoes = 0;
  const options: RpcOptions = { onRefusal: (_peer, refusal) => refused.push(refusal.reason) };
  const start = () =>
    rpcServer(key, identity, {
      echo: (request) => {
        echoes++;
        return { header: { got: request.header.value }, data: request.data };
      },
      fail: () => {
        throw new RangeError("no such thing");
      },
    }, options);
  let handler = start();
  let canned: Response | null = null;
  const bodies: Uint8Array<ArrayBuffer>[] = [];
  const replies: Uint8Array<ArrayBuffer>[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request, info) => {
      const body = new Uint8Array(await request.arrayBuffer());
      bodies.push(body);
      const copy = new Request(request.url, { method: "POST", headers: request.headers, body });
      const response = canned ?? await handler(copy, info);
      canned = null;
      replies.push(new Uint8Array(await response.clone().arrayBuffer()));
      return response;
    },
  );
  try {
    await fn({
      address: `127.0.0.1:${server.addr.port}`,
      bodies,
      replies,
      echoes: () => echoes,
      refused,
      restart: () => handler = start(),
      answerNextWith: (response) => canned = response,
    });
  } finally {
    await server.shutdown();
  }
}

/** The sequence number of a sealed request (0: a hello). */
function sequenceOf(body: Uint8Array): number {
  return Number(new DataView(body.buffer, body.byteOffset).getBigUint64(52));
}

Deno.test("RpcClient.call() reaches a method and returns its header and data", async () => {
  await withServer(async ({ address }) => {
    const client = new RpcClient(key, new MemoryIdentity());
    const data = new Uint8Array([1, 2, 3]);
    const reply = await client.call(address, "echo", { header: { value: 42 }, data });
    assert.equal(reply.header.got, 42);
    assert.deepEqual(reply.data, data);
    await assert.rejects(client.call(address, "fail"), /no such thing/);
    await assert.rejects(client.call(address, "nope"), /unknown method/);
  });
});

Deno.test("one hello opens a session that concurrent calls share", async () => {
  await withServer(async ({ address, bodies }) => {
    const client = new RpcClient(key, new MemoryIdentity());
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => client.call(address, "echo", { header: { value: i } })),
    );
    assert.equal(bodies.filter((body) => sequenceOf(body) === 0).length, 1);
    assert.deepEqual(bodies.map(sequenceOf).sort((a, b) => a - b).slice(1), [
      ...Array.from({ length: 20 }, (_, i) => i + 1),
    ]);
  });
});

Deno.test("a peer without the cluster key is refused", async () => {
  await withServer(async ({ address, refused }) => {
    await assert.rejects(
      new RpcClient(stranger, new MemoryIdentity()).call(address, "echo"),
      /refused \(authentication\): sealed with another cluster key/,
    );
    const plain = await fetch(`http://${address}/rpc`, { method: "POST", body: "{}" });
    assert.equal(plain.status, 403);
    await plain.body?.cancel();
    assert.deepEqual(refused, ["authentication", "authentication"]);
  });
});

Deno.test("a captured request replayed is refused, and its method does not run again", async () => {
  await withServer(async ({ address, bodies, echoes, refused }) => {
    const client = new RpcClient(key, new MemoryIdentity());
    await client.call(address, "echo", { header: { value: 1 } });
    assert.equal(echoes(), 1);
    const captured = bodies.at(-1)!;
    assert.equal(sequenceOf(captured), 1);
    for (const body of [captured, bodies[0]]) {
      const replay = await fetch(`http://${address}/rpc`, { method: "POST", body });
      await replay.body?.cancel();
      if (body === captured) assert.equal(replay.status, 403);
    }
    assert.deepEqual(refused, ["replay"]);
    assert.equal(echoes(), 1);
    // (A replayed hello only mints a session nobody can use.) The client carries on.
    assert.equal((await client.call(address, "echo", { header: { value: 2 } })).header.got, 2);
  });
});

Deno.test("a captured reply replayed to another request is refused", async () => {
  await withServer(async ({ address, replies, answerNextWith }) => {
    const client = new RpcClient(key, new MemoryIdentity());
    await client.call(address, "echo", { header: { value: 1 } });
    answerNextWith(
      new Response(replies.at(-1)!, { headers: { "content-type": "application/x-atoll-sealed" } }),
    );
    const error = await client.call(address, "echo", { header: { value: 2 } }).catch((e) => e);
    assert.ok(error instanceof RpcError);
    assert.match(error.message, /refused its reply \(replay\)/);
  });
});

Deno.test("after a server restart, an unknown session costs one transparent hello", async () => {
  await withServer(async ({ address, bodies, refused, restart }) => {
    const client = new RpcClient(key, new MemoryIdentity());
    await client.call(address, "echo", { header: { value: 1 } });
    restart();
    const reply = await client.call(address, "echo", { header: { value: 2 } });
    assert.equal(reply.header.got, 2);
    assert.deepEqual(refused, ["session"]);
    // hello, call 1, call 2 refused (unknown session), hello, call 2 again.
    assert.deepEqual(bodies.map(sequenceOf), [0, 1, 2, 0, 1]);
  });
});

Deno.test("a peer 10 minutes off is refused with reason clock-skew; 2 minutes off works", async () => {
  await withServer(async ({ address, refused }) => {
    const reasons: RefusalReason[] = [];
    const skewedBy = (skewMs: number) =>
      new RpcClient(key, new MemoryIdentity(), {
        wallClock: () => Date.now() + skewMs,
        onRefusal: (_peer, refusal) => reasons.push(refusal.reason),
      });
    const error = await skewedBy(10 * minuteMs).call(address, "echo").catch((e) => e);
    assert.ok(error instanceof RpcError && !error.unreachable);
    // The server refuses it, and so does the client with the server's refusal.
    assert.match(error.message, /refused its reply \(clock-skew\): clock 600 s behind ours/);
    assert.deepEqual(refused, ["clock-skew"]);
    assert.deepEqual(reasons, ["clock-skew"]);
    for (const skewMs of [2 * minuteMs, -2 * minuteMs]) {
      const reply = await skewedBy(skewMs).call(address, "echo", { header: { value: 7 } });
      assert.equal(reply.header.got, 7);
    }
    assert.deepEqual(refused, ["clock-skew"]);
  });
});

Deno.test("a member of another cluster is refused with reason cluster-id", async () => {
  const ours = newClusterId();
  await withServer(async ({ address, refused }) => {
    const error = await new RpcClient(key, new MemoryIdentity(newClusterId())).call(address, "echo")
      .catch((e) => e);
    assert.match(String(error), /refused its reply \(cluster-id\)/);
    assert.deepEqual(refused, ["cluster-id"]);
  }, new MemoryIdentity(ours));
});

Deno.test("a node without a cluster id is accepted, and adopts the id of the cluster it calls", async () => {
  const ours = newClusterId();
  await withServer(async ({ address, refused }) => {
    const joining = new MemoryIdentity(null);
    await new RpcClient(key, joining).call(address, "echo");
    assert.equal(joining.current(), ours);
    assert.deepEqual(refused, []);
  }, new MemoryIdentity(ours));
  const fresh = new MemoryIdentity(null);
  await withServer(async ({ address }) => {
    await new RpcClient(key, new MemoryIdentity(ours)).call(address, "echo");
  }, fresh);
  assert.equal(fresh.current(), ours, "a server without an id adopts its caller's");
});

Deno.test("an unreachable peer fails with RpcError marked unreachable", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const error = await new RpcClient(key, new MemoryIdentity()).call(`127.0.0.1:${port}`, "echo")
    .catch((e) => e);
  assert.ok(error instanceof RpcError && error.unreachable);
});
