import assert from "node:assert/strict";
import { ClusterKey } from "./auth.ts";
import { RpcClient, RpcError, rpcServer } from "./rpc.ts";

const key = new ClusterKey(new TextEncoder().encode("cluster-key-".repeat(4)));
const stranger = new ClusterKey(new TextEncoder().encode("another-key-".repeat(4)));

async function withServer(fn: (address: string) => Promise<void>) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    rpcServer(key, {
      echo: (request) => ({ header: { got: request.header.value }, data: request.data }),
      fail: () => {
        throw new RangeError("no such thing");
      },
    }),
  );
  try {
    await fn(`127.0.0.1:${server.addr.port}`);
  } finally {
    await server.shutdown();
  }
}

Deno.test("RpcClient.call() reaches a method and returns its header and data", async () => {
  await withServer(async (address) => {
    const client = new RpcClient(key);
    const data = new Uint8Array([1, 2, 3]);
    const reply = await client.call(address, "echo", { header: { value: 42 }, data });
    assert.equal(reply.header.got, 42);
    assert.deepEqual(reply.data, data);
    await assert.rejects(client.call(address, "fail"), /no such thing/);
    await assert.rejects(client.call(address, "nope"), /unknown method/);
  });
});

Deno.test("a peer without the cluster key, or replaying a call, is refused", async () => {
  await withServer(async (address) => {
    await assert.rejects(new RpcClient(stranger).call(address, "echo"), /another cluster key/);
    const sealed = key.seal(new Uint8Array(8), Date.now());
    const first = await fetch(`http://${address}/rpc`, { method: "POST", body: sealed });
    await first.body?.cancel();
    const replay = await fetch(`http://${address}/rpc`, { method: "POST", body: sealed });
    assert.equal(replay.status, 403);
    assert.match(await replay.text(), /replayed/);
    const plain = await fetch(`http://${address}/rpc`, { method: "POST", body: "{}" });
    assert.equal(plain.status, 403);
    await plain.body?.cancel();
  });
});

Deno.test("an unreachable peer fails with RpcError marked unreachable", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const error = await new RpcClient(key).call(`127.0.0.1:${port}`, "echo").catch((e) => e);
  assert.ok(error instanceof RpcError && error.unreachable);
});
