/**
 * Goal: blocks written through one node land on their replicas, any node reads
 * them back verified, and a corrupt or missing copy is detected and repaired.
 * Method: three nodes in process, each a LocalEngine behind a sealed RPC server
 * on loopback, placement by rendezvous with R = 2.
 */
import assert from "node:assert/strict";
import { LocalEngine } from "../core/mod.ts";
import { ClusterKey } from "./auth.ts";
import { blockMethods, type BlockPeer, ReplicatedBlocks, sha256Hex } from "./block_service.ts";
import { Placement } from "./placement.ts";
import { RpcClient, rpcServer } from "./rpc.ts";
import { patternBytes } from "../tests/_files.ts";

const key = new ClusterKey(new TextEncoder().encode("block-service-test-key-012345678"));

async function startNodes(count: number) {
  const nodes = await Promise.all(Array.from({ length: count }, async (_, i) => {
    const dir = await Deno.makeTempDir({ prefix: "atoll-blocks-" });
    const engine = await LocalEngine.open({ dir });
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      rpcServer(key, blockMethods(engine)),
    );
    return { id: `node-${i}`, address: `127.0.0.1:${server.addr.port}`, dir, engine, server };
  }));
  const placement = new Placement(nodes.map((n) => ({ id: n.id, weight: 1, zone: null })));
  const peers = new Map<string, BlockPeer>(nodes.map((n) => [n.id, n]));
  const replicasOf = (name: string) => placement.replicas(name, 2).map((id) => peers.get(id)!);
  const services = nodes.map((node) =>
    new ReplicatedBlocks({
      selfId: node.id,
      engine: node.engine,
      rpc: new RpcClient(key),
      replicasOf,
    })
  );
  const stop = async () => {
    for (const node of nodes) {
      await node.server.shutdown();
      await node.engine.close();
      await Deno.remove(node.dir, { recursive: true });
    }
  };
  return { nodes, services, replicasOf, stop };
}

Deno.test("blocks land on their replicas and any node reads them verified", async () => {
  const { nodes, services, replicasOf, stop } = await startNodes(3);
  try {
    const data = patternBytes(1024 * 1024, 7);
    const hash = sha256Hex(data);
    assert.equal(await services[0].put(hash, data), true);
    const holders = replicasOf(hash).map((peer) => peer.id).sort();
    for (const node of nodes) {
      assert.equal(await node.engine.hasBlock(hash), holders.includes(node.id), node.id);
    }
    const outsider = nodes.findIndex((node) => !holders.includes(node.id));
    const part = new Uint8Array(1000);
    await services[outsider].read(hash, { offset: 5000, length: 1000 }, part);
    assert.deepEqual(part, data.subarray(5000, 6000));
    assert.equal(await nodes[outsider].engine.hasBlock(hash), true, "kept a verified copy");
  } finally {
    await stop();
  }
});

Deno.test("a corrupt replica is skipped, repaired, and a forged put is refused", async () => {
  const { nodes, services, replicasOf, stop } = await startNodes(3);
  try {
    const data = patternBytes(256 * 1024, 9);
    const hash = sha256Hex(data);
    await services[0].put(hash, data);
    const [first, second] = replicasOf(hash).map((peer) => nodes.find((n) => n.id === peer.id)!);
    const path = `${first.dir}/blocks/${hash.slice(0, 2)}/${hash}`;
    const corrupt = data.slice();
    corrupt[100] ^= 0xff;
    await Deno.writeFile(path, corrupt);
    const reader = nodes.findIndex((node) => node !== first && node !== second);
    const into = new Uint8Array(data.length);
    await services[reader].read(hash, { offset: 0, length: data.length }, into);
    assert.deepEqual(into, data, "read the good replica");
    // The repair replaces the copy (delete, put, flush): the file may be briefly absent.
    const stored = () => Deno.readFile(path).then(sha256Hex, () => "absent");
    for (let i = 0; i < 100 && await stored() !== hash; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(await stored(), hash, "the bad copy was repaired");
    const forged = await new RpcClient(key).call(second.address, "block.put", {
      header: { hash: "0".repeat(64) },
      data,
    }).catch((error) => error);
    assert.match(String(forged), /do not match its name/);
  } finally {
    await stop();
  }
});
