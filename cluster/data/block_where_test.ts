/**
 * Goal: a read that no member this node knows can serve still finds a block a
 * writer placed on a member this node has not heard of yet (a join), and a
 * block no member holds is still reported lost.
 * Method: four nodes in process, each a LocalEngine behind a sealed RPC server
 * on loopback; the writer places by a view of all four (R = 2), the reader by a
 * view of itself and the writer only, as gossip lags a join.
 */
import assert from "node:assert/strict";
import { CorruptionError, LocalEngine } from "../../core/mod.ts";
import { patternBytes } from "../../tests/_files.ts";
import { Placement } from "../placement/mod.ts";
import {
  ClusterKey,
  MemoryIdentity,
  RpcClient,
  type RpcMethod,
  rpcServer,
} from "../transport/mod.ts";
import { blockMethods, sha256Hex } from "./block_rpc.ts";
import { type BlockPeer, ReplicatedBlocks } from "./block_service.ts";

const key = new ClusterKey(new TextEncoder().encode("block-where-test-key-0123456789ab"));

async function startNodes(count: number) {
  return await Promise.all(Array.from({ length: count }, async (_, i) => {
    const dir = await Deno.makeTempDir({ prefix: "atoll-where-" });
    const engine = await LocalEngine.open({ dir });
    const methods: Record<string, RpcMethod> = { ...blockMethods(engine) };
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      rpcServer(key, new MemoryIdentity(), methods),
    );
    const address = `127.0.0.1:${server.addr.port}`;
    return { id: `node-${i}`, address, dir, engine, server, methods };
  }));
}

/** Placement of `name` over `peers` at R = 2. */
function placer(peers: BlockPeer[]): (name: string) => BlockPeer[] {
  const placement = new Placement(peers.map((p) => ({ id: p.id, weight: 1, zone: null })));
  return (name) => placement.replicas(name, 2).map((id) => peers.find((p) => p.id === id)!);
}

for (const whereServed of [true, false]) {
  Deno.test(`a read asks the members it knows where they place a block (served: ${whereServed})`, async () => {
    const nodes = await startNodes(4);
    try {
      const [writer, reader] = nodes;
      const all = placer(nodes);
      const lagging = placer([writer, reader]);
      const service = (node: typeof writer, replicasOf: (name: string) => BlockPeer[]) => {
        const blocks = new ReplicatedBlocks({
          selfId: node.id,
          engine: node.engine,
          rpc: new RpcClient(key, new MemoryIdentity()),
          replicasOf,
          allPeers: () => (node === reader ? [writer] : nodes).filter((p) => p.id !== node.id),
          lostConfirmMs: 0,
        });
        if (whereServed) Object.assign(node.methods, blocks.methods());
        return blocks;
      };
      const writes = service(writer, all);
      const reads = service(reader, lagging);
      // A block the writer's view places on the two members the reader does not know.
      let seed = 0;
      let data = patternBytes(64 * 1024, seed);
      while (all(sha256Hex(data)).some((peer) => peer.id === writer.id || peer.id === reader.id)) {
        data = patternBytes(64 * 1024, ++seed);
      }
      const hash = sha256Hex(data);
      await writes.put(hash, data);
      const into = new Uint8Array(data.length);
      if (!whereServed) {
        // A writer that cannot say where it placed the block (an older version): lost, as before.
        await assert.rejects(
          reads.read(hash, { offset: 0, length: data.length }, into),
          CorruptionError,
        );
        return;
      }
      await reads.read(hash, { offset: 0, length: data.length }, into);
      assert.deepEqual(into, data);
      assert.equal(reads.counters.foundElsewhere, 1);
      // A block no member holds: every member says so, and where it would be holds nothing.
      const missing = sha256Hex(patternBytes(4096, 99_999));
      await assert.rejects(reads.read(missing, { offset: 0, length: 4096 }, into), CorruptionError);
    } finally {
      for (const node of nodes) {
        await node.server.shutdown();
        await node.engine.close();
        await Deno.remove(node.dir, { recursive: true });
      }
    }
  });
}

Deno.test("a read that finds a block nowhere looks once more after gossip had time to spread", async () => {
  // Seed 10031090 of the data-path simulation: the writer had joined a second before, and
  // neither the reader nor the members it knew had heard of it yet.
  const nodes = await startNodes(3);
  try {
    const [writer, reader, other] = nodes;
    let known = [reader, other];
    const writes = new ReplicatedBlocks({
      selfId: writer.id,
      engine: writer.engine,
      rpc: new RpcClient(key, new MemoryIdentity()),
      replicasOf: () => [writer],
    });
    const waits: number[] = [];
    const reads = new ReplicatedBlocks({
      selfId: reader.id,
      engine: reader.engine,
      rpc: new RpcClient(key, new MemoryIdentity()),
      replicasOf: placer(known),
      allPeers: () => known.filter((p) => p.id !== reader.id),
      clock: {
        now: () => performance.now(),
        sleep: (ms: number) => {
          waits.push(ms);
          known = nodes; // gossip tells the reader of the writer meanwhile
          return Promise.resolve();
        },
      },
    });
    const data = patternBytes(64 * 1024, 4242);
    const hash = sha256Hex(data);
    await writes.put(hash, data);
    const into = new Uint8Array(data.length);
    await reads.read(hash, { offset: 0, length: data.length }, into);
    assert.deepEqual(into, data);
    assert.deepEqual(waits, [5_000]);
  } finally {
    for (const node of nodes) {
      await node.server.shutdown();
      await node.engine.close();
      await Deno.remove(node.dir, { recursive: true });
    }
  }
});
