/**
 * Goal: on real sockets, a node refuses replayed and skewed datagrams and says
 * why; a member whose clock is 2 minutes off joins, one 10 minutes off never does.
 * Method: ClusterNodes in this process on loopback; datagrams sealed by hand and
 * sent from a plain UDP socket; skew is a node's wall clock shifted.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { channelBytes, ClusterKey } from "./auth.ts";
import { ClusterNode } from "./cluster_node.ts";
import { MemoryIdentity, newClusterId } from "./identity.ts";
import { LinkClient } from "./link_client.ts";

const key = new ClusterKey(new TextEncoder().encode("cluster-node-test-key-0123456789"));
const minuteMs = 60_000;

function start(id: string, join: string[] = [], skewMs = 0): Promise<ClusterNode> {
  return ClusterNode.start({
    key,
    identity: new MemoryIdentity(),
    bind: { hostname: "127.0.0.1", port: 0 },
    join,
    self: { id, zone: null, weight: 1 },
    wallClock: () => Date.now() + skewMs,
  });
}

async function eventually(what: string, check: () => boolean, limitMs = 5000): Promise<void> {
  const started = performance.now();
  while (!check()) {
    if (performance.now() - started > limitMs) assert.fail(`${what}: not within ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test("a node refuses a replayed datagram and one from a clock 10 minutes off", async () => {
  const node = await start("n1");
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  try {
    const port = Number(node.address.split(":")[1]);
    const boot = crypto.getRandomValues(new Uint8Array(channelBytes));
    const seal = (sequence: number, skewMs = 0) =>
      key.seal(new TextEncoder().encode('{"type":"gossip","source":"raw","updates":[]}'), {
        nowMs: Date.now() + skewMs,
        identity: new MemoryIdentity(),
        channel: boot,
        sequence,
      });
    const first = seal(1);
    const datagrams = [first, first, seal(2, 10 * minuteMs), seal(3)];
    for (const [i, datagram] of datagrams.entries()) {
      socket.send(datagram, port, "127.0.0.1");
      await eventually(`datagram ${i} in`, () => node.counters.datagramsIn === i + 1);
    }
    assert.equal(node.counters.rejected, 2);
    const status = node.refusalStatus();
    assert.equal(status.byReason.replay, 1);
    assert.equal(status.byReason["clock-skew"], 1);
    assert.equal(status.peers.length, 1);
    assert.equal(status.peers[0].address, `127.0.0.1:${socket.address().port}`);
    assert.equal(status.peers[0].count, 2);
    assert.ok(Math.abs(status.peers[0].skewMs! - 10 * minuteMs) < 5000);
  } finally {
    socket.close();
    await node.close();
  }
});

Deno.test("a member 2 minutes off joins; one 10 minutes off is refused and never joins", async () => {
  const seed = await start("seed");
  const near = await start("near", [seed.address], 2 * minuteMs);
  const far = await start("far", [seed.address], 10 * minuteMs);
  try {
    await eventually("near is a member", () => seed.members().some((m) => m.id === "near"));
    await eventually("the seed refused far", () => seed.refusals.byReason["clock-skew"] > 0);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.ok(!seed.members().some((member) => member.id === "far"));
    assert.ok(!far.members().some((member) => member.id === "seed"));
    const refused = seed.refusalStatus().peers.find((peer) => peer.address === far.address);
    assert.equal(refused?.reason, "clock-skew");
    // Far's own view: the seed's refusal, sealed, is refused in turn for the same reason.
    assert.ok(far.refusals.byReason["clock-skew"] > 0);
    assert.ok(near.members().every((member) => member.status === "alive"));
  } finally {
    for (const node of [far, near, seed]) await node.close();
  }
});

Deno.test("a node counts and names the links it refuses, by reason, with its other refusals", async () => {
  const node = await ClusterNode.start({
    key,
    identity: new MemoryIdentity(newClusterId()),
    bind: { hostname: "127.0.0.1", port: 0 },
    join: [],
    self: { id: "n1", zone: null, weight: 1 },
    methods: { echo: () => ({ header: { ok: 1 } }) },
  });
  const stranger = new ClusterKey(new TextEncoder().encode("a-stranger-key-0123456789abcdefg"));
  const clients = [
    new LinkClient(stranger, new MemoryIdentity(), { selfId: "stranger" }),
    new LinkClient(key, new MemoryIdentity(newClusterId()), { selfId: "other-cluster" }),
  ];
  clients[0].announce("127.0.0.1:7001");
  clients[1].announce("127.0.0.1:7002");
  try {
    for (const client of clients) {
      await assert.rejects(client.call(node.address, "echo"), /refused/);
    }
    const status = node.refusalStatus();
    assert.equal(status.byReason.authentication, 1);
    assert.equal(status.byReason["cluster-id"], 1);
    assert.deepEqual(
      status.peers.map((peer) => [peer.address, peer.reason]).sort(),
      [["127.0.0.1:7001", "authentication"], ["127.0.0.1:7002", "cluster-id"]],
    );
    // A member with the key is served.
    const member = new LinkClient(key, new MemoryIdentity(), { selfId: "member" });
    assert.equal((await member.call(node.address, "echo")).header.ok, 1);
    await member.close();
  } finally {
    for (const client of clients) await client.close();
    await node.close();
  }
});
