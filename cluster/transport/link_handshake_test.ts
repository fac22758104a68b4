/**
 * Goal: a link opens only between holders of the cluster key of one cluster,
 * proved once per connection with fresh nonces from both sides: a wrong key, a
 * member of another cluster, and captured handshake bytes replayed to either
 * side are refused and counted by reason; an unauthenticated connection gets
 * nothing but the handshake, is cut at its deadline or at an oversize frame;
 * an authenticated one is cut at a frame over rpcBytesMax.
 * Method: a cluster port on loopback; raw sockets write hand-made or captured
 * bytes; a TCP relay captures a real handshake.
 */
import assert from "node:assert/strict";
import { MemoryIdentity, newClusterId } from "./identity.ts";
import { LinkConn } from "./_link_conn.ts";
import { LinkClient } from "./link_client.ts";
import { openHandshake } from "./link_handshake.ts";
import { encodeBareFrame, frameHeadBytes, FrameKind, linkPreamble } from "./link_wire.ts";
import { rpcBytesMax, RpcError } from "./rpc_message.ts";
import type { RefusalReason } from "./auth.ts";
import { concat, key, readToEnd, Relay, startPort, stranger } from "../../tests/_link_proxy.ts";

/** A raw connection to `address`. */
function connect(address: string): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: "127.0.0.1", port: Number(address.split(":")[1]) });
}

/** A frame head announcing `bodyBytes` of `kind`, whatever the limits. */
function head(kind: number, bodyBytes: number): Uint8Array {
  const bytes = new Uint8Array(frameHeadBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, bodyBytes);
  view.setUint8(8, kind);
  return bytes;
}

Deno.test("a client with another key is refused, and the server counts it by reason and peer", async () => {
  const server = startPort();
  const links = new LinkClient(stranger, new MemoryIdentity(), { selfId: "intruder" });
  links.announce("127.0.0.1:7946");
  try {
    const error = await links.call(server.address, "echo").catch((error) => error);
    assert.ok(error instanceof RpcError && !error.unreachable, String(error));
    assert.match(error.message, /refused \(authentication\): sealed with another cluster key/);
    assert.deepEqual(server.refused, [{ peer: "127.0.0.1:7946", reason: "authentication" }]);
    assert.equal(server.echoes, 0);
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("members of two clusters refuse each other's links as cluster-id, on both sides", async () => {
  const server = startPort({ identity: new MemoryIdentity(newClusterId()) });
  const refused: RefusalReason[] = [];
  const links = new LinkClient(key, new MemoryIdentity(newClusterId()), {
    selfId: "other",
    onRefusal: (_peer, refusal) => refused.push(refusal.reason),
  });
  try {
    const error = await links.call(server.address, "echo").catch((error) => error);
    assert.ok(error instanceof RpcError && !error.unreachable, String(error));
    assert.match(error.message, /cluster-id/);
    assert.deepEqual(refused, ["cluster-id"]);
    assert.deepEqual(server.refused.map((refusal) => refusal.reason), ["cluster-id"]);
    assert.equal(server.echoes, 0);
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("a node that has not joined yet takes the cluster id of the member it links to", async () => {
  const id = newClusterId();
  const server = startPort({ identity: new MemoryIdentity(id) });
  const joining = new MemoryIdentity();
  const links = new LinkClient(key, joining, { selfId: "joining" });
  try {
    await links.call(server.address, "echo");
    assert.equal(joining.current(), id);
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("links opened before a node took a cluster id are reopened once it has one", async () => {
  const serverIdentity = new MemoryIdentity();
  const server = startPort({ identity: serverIdentity });
  const relay = new Relay(Number(server.address.split(":")[1]));
  const joining = new MemoryIdentity();
  const links = new LinkClient(key, joining, { selfId: "joining" });
  try {
    await links.call(relay.address, "echo");
    const id = newClusterId();
    joining.adopt(id);
    await links.call(relay.address, "echo");
    assert.equal(relay.toServer.length, 2, "a second handshake, which carried the id");
    assert.equal(serverIdentity.current(), id);
  } finally {
    await links.close();
    await relay.close();
    await server.stop();
  }
});

Deno.test("a client's handshake bytes replayed on a new connection are refused as replay", async () => {
  const server = startPort();
  const relay = new Relay(Number(server.address.split(":")[1]));
  const links = new LinkClient(key, new MemoryIdentity(), { selfId: "client" });
  try {
    await links.call(relay.address, "echo", { header: { value: 1 } });
    assert.equal(server.echoes, 1);
    // Preamble, hello, proof and the call, as the client sent them.
    const captured = concat(relay.toServer[0]);
    const conn = await connect(server.address);
    await conn.write(captured);
    await readToEnd(conn);
    conn.close();
    assert.deepEqual(server.refused.map((refusal) => refusal.reason), ["replay"]);
    assert.equal(server.echoes, 1, "the replayed call did not run");
  } finally {
    await links.close();
    await relay.close();
    await server.stop();
  }
});

Deno.test("a server's handshake bytes replayed to a new client are refused as replay", async () => {
  const server = startPort();
  const relay = new Relay(Number(server.address.split(":")[1]));
  const refused: RefusalReason[] = [];
  const links = new LinkClient(key, new MemoryIdentity(), {
    selfId: "client",
    onRefusal: (_peer, refusal) => refused.push(refusal.reason),
  });
  const fake = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await links.call(relay.address, "echo");
    const captured = concat(relay.toClient[0]); // challenge, welcome, the reply
    const serving = (async () => {
      const conn = await fake.accept();
      await conn.write(captured);
      await readToEnd(conn);
      conn.close();
    })();
    const error = await links.call(`127.0.0.1:${fake.addr.port}`, "echo").catch((error) => error);
    assert.ok(error instanceof RpcError && !error.unreachable, String(error));
    assert.match(error.message, /replay/);
    assert.deepEqual(refused, ["replay"]);
    await serving;
  } finally {
    fake.close();
    await links.close();
    await relay.close();
    await server.stop();
  }
});

Deno.test("an unauthenticated connection gets nothing but the handshake", async () => {
  const server = startPort();
  try {
    // A call where the hello is due: refused, not run.
    const conn = await connect(server.address);
    const call = encodeBareFrame(FrameKind.call, 1, new TextEncoder().encode("echo"));
    new DataView(call.buffer).setUint8(9, 4); // method bytes
    await conn.write(concat([linkPreamble, call]));
    const answer = await readToEnd(conn);
    conn.close();
    assert.equal(answer[8], FrameKind.refusal);
    assert.equal(server.echoes, 0);
    // A hello announcing 1 MiB is cut at its head, not read.
    const big = await connect(server.address);
    await big.write(concat([linkPreamble, head(FrameKind.hello, 1 << 20)]));
    await readToEnd(big);
    big.close();
    assert.deepEqual(server.refused.map((refusal) => refusal.reason), [
      "authentication",
      "authentication",
    ]);
  } finally {
    await server.stop();
  }
});

Deno.test("a connection that does not complete its handshake in time is cut, trickling or silent", async () => {
  const server = startPort({ handshakeTimeoutMs: 300 });
  try {
    for (const trickle of [false, true]) {
      const conn = await connect(server.address);
      const started = performance.now();
      const hello = concat([linkPreamble, head(FrameKind.hello, 100), new Uint8Array(100)]);
      const writing = (async () => {
        for (let i = 0; trickle && i < hello.length; i++) {
          await conn.write(hello.subarray(i, i + 1));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })().catch(() => {});
      await readToEnd(conn);
      const cutMs = performance.now() - started;
      conn.close();
      await writing;
      assert.ok(cutMs >= 250 && cutMs < 1500, `cut after ${Math.round(cutMs)} ms`);
    }
  } finally {
    await server.stop();
  }
});

Deno.test("an authenticated link is closed at a frame over rpcBytesMax", async () => {
  const server = startPort();
  const conn = await connect(server.address);
  const link = new LinkConn(conn);
  try {
    await openHandshake(link, { key, identity: new MemoryIdentity(), selfId: "raw", address: "" });
    link.send([head(FrameKind.call, rpcBytesMax + 1)]);
    const ended = await link.readFrame(rpcBytesMax).then(() => true, () => true);
    assert.ok(ended);
    assert.equal(await link.readFrame(rpcBytesMax).catch(() => null), null, "closed");
  } finally {
    link.close(new Error("test over"));
    await server.stop();
  }
});
