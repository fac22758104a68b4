/**
 * Goal: with R = 2, blocks and objects keep taking writes (and flushes) while
 * one replica is dead, the replica is brought up to date once it is back (by the
 * writer's next write or flush, or by healing), and a replica that is merely
 * suspect (it may be alive) is still waited for: nothing is acknowledged on one
 * copy then.
 * Method: three ClusterEngines in process (R = 2) behind sealed RPC servers on
 * loopback, membership a list the test controls. Node 0 writes through a
 * ReplicatedBlocks and a ReplicatedObjects built over its engine with `isDead`
 * from that list, as cluster_engine.ts wires them; copies are checked on each
 * node's local store.
 */
import assert from "node:assert/strict";
import { type BlockPeer, ReplicatedBlocks } from "./block_service.ts";
import { sha256Hex } from "./block_rpc.ts";
import { Healer } from "../repair/mod.ts";
import type { ObjectLink } from "./object_link.ts";
import { rpcObjectLink } from "./object_rpc_link.ts";
import { ReplicaQuorumError, ReplicatedObjects } from "./replicated_objects.ts";
import { TestCluster, testClusterKey, type TestClusterNode } from "../../tests/_engine_cluster.ts";
import { RpcClient } from "../transport/mod.ts";
import { patternBytes } from "../../tests/_files.ts";

const uid = "e".repeat(32);
const objectNames = Array.from({ length: 24 }, (_, i) => `${uid}.1.${i}`);

/** Node 0's writing services, with `isDead` read from the test's member list. */
function writerOn(cluster: TestCluster, node: TestClusterNode) {
  // The cluster's own id: a client of another cluster (an earlier test's) is refused.
  const rpc = new RpcClient(testClusterKey, node.engine.nodeConfig.identity);
  const isDead = (id: string) =>
    cluster.members.find((member) => member.id === id)?.status === "dead";
  const links = new Map<string, ObjectLink>();
  const linkOf = (peer: BlockPeer): ObjectLink => {
    if (peer.id === node.id) return node.engine.replica;
    const key = `${peer.id} ${peer.address}`;
    if (!links.has(key)) links.set(key, rpcObjectLink(rpc, peer.id, peer.address));
    return links.get(key)!;
  };
  const blocks = new ReplicatedBlocks({
    selfId: node.id,
    engine: node.engine.local,
    rpc,
    replicasOf: (name) => node.engine.replicaPeers(name),
    isDead,
  });
  const objects = new ReplicatedObjects({
    selfId: node.id,
    replicasOf: (name) => node.engine.replicaPeers(name).map(linkOf),
    epochOf: () => 1,
    isDead,
  });
  return { blocks, objects };
}

function replicaIds(cluster: TestCluster, name: string): string[] {
  return cluster.nodes[0].engine.replicaPeers(name).map((peer) => peer.id).sort();
}

function nodeOf(cluster: TestCluster, id: string): TestClusterNode {
  return cluster.nodes.find((node) => node.id === id)!;
}

async function healAll(cluster: TestCluster): Promise<void> {
  for (let pass = 0; pass < 2; pass++) {
    for (const node of cluster.nodes.filter((node) => node.server !== null)) {
      const rpc = new RpcClient(testClusterKey, node.engine.nodeConfig.identity);
      await new Healer({ engine: node.engine, rpc, intervalMs: 1000 }).pass();
    }
  }
}

/** Each replica's stamp and bytes of `name`, read on the replica's own store. */
async function copiesOf(cluster: TestCluster, name: string) {
  return await Promise.all(
    replicaIds(cluster, name).map(async (id) => {
      const { data, stamp } = await nodeOf(cluster, id).engine.replica.read(name, 0, -1);
      return { id, data, stamp };
    }),
  );
}

async function assertCurrent(cluster: TestCluster, name: string, expected: Uint8Array) {
  const copies = await copiesOf(cluster, name);
  assert.equal(copies.length, 2, name);
  for (const copy of copies) assert.deepEqual(copy.data, expected, `${name} on ${copy.id}`);
  assert.deepEqual(copies[0].stamp, copies[1].stamp, `${name}: stamps differ`);
}

Deno.test("R=2: blocks are stored while a replica is dead, and reach it once it is back", async () => {
  const cluster = await TestCluster.start(3, { replicas: 2 });
  try {
    const [writerNode, victim] = cluster.nodes;
    const { blocks } = writerOn(cluster, writerNode);
    const data = Array.from({ length: 16 }, (_, i) => patternBytes(4096 + i, i));
    const hashes = data.map(sha256Hex);
    const onVictim = hashes.filter((hash) => replicaIds(cluster, hash).includes(victim.id));
    // Both shapes: the writer is the other replica, and the writer is no replica.
    assert.ok(onVictim.some((hash) => replicaIds(cluster, hash).includes(writerNode.id)));
    assert.ok(onVictim.some((hash) => !replicaIds(cluster, hash).includes(writerNode.id)));

    await cluster.kill(victim);
    for (let i = 0; i < data.length; i++) await blocks.put(hashes[i], data[i]);
    for (const hash of onVictim) {
      assert.ok(blocks.hints.get(hash)?.has(victim.id), `a hint for ${hash}`);
      const other = replicaIds(cluster, hash).find((id) => id !== victim.id)!;
      assert.ok(await nodeOf(cluster, other).engine.local.hasBlock(hash), "the live copy");
    }

    await cluster.revive(victim);
    await healAll(cluster);
    for (const hash of hashes) {
      for (const id of replicaIds(cluster, hash)) {
        assert.ok(await nodeOf(cluster, id).engine.local.hasBlock(hash), `${hash} on ${id}`);
      }
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("R=2: objects are written and flushed while a replica is dead, then caught up", async () => {
  const cluster = await TestCluster.start(3, { replicas: 2 });
  try {
    const [writerNode, victim] = cluster.nodes;
    const { objects } = writerOn(cluster, writerNode);
    const version = (name: string, v: number) => patternBytes(8192, name.length * 10 + v);
    for (const name of objectNames) {
      await objects.write(name, 0, version(name, 1), { truncate: true });
    }
    await objects.flush();
    const onVictim = objectNames.filter((name) => replicaIds(cluster, name).includes(victim.id));
    // Three groups, each caught up another way once the victim is back.
    const [byWrite, byFlush, byHealing] = [0, 1, 2].map((group) =>
      onVictim.filter((_, i) => i % 3 === group)
    );
    for (const group of [byWrite, byFlush, byHealing]) assert.ok(group.length > 0);
    assert.ok(onVictim.some((name) => !replicaIds(cluster, name).includes(writerNode.id)));

    // Dead: every write and the flush succeed on the one live copy.
    await cluster.kill(victim);
    for (const name of objectNames) {
      await objects.write(name, 0, version(name, 2), { truncate: true });
    }
    await objects.flush();
    for (const name of onVictim) {
      const live = replicaIds(cluster, name).find((id) => id !== victim.id)!;
      const { data } = await nodeOf(cluster, live).engine.replica.read(name, 0, -1);
      assert.deepEqual(data, version(name, 2), `${name} on ${live}`);
    }
    // Written while dead, flushed only once the victim is back (below).
    for (const name of byFlush) await objects.write(name, 0, version(name, 3), { truncate: true });
    await objects.settle(); // the flush's background repairs gave up on the dead replica

    await cluster.revive(victim);
    // The flush now needs both copies: it brings the victim's up, durably.
    await objects.flush();
    for (const name of byFlush) await assertCurrent(cluster, name, version(name, 3));
    // The next write brings the victim's copy up before changing both.
    for (const name of byWrite) await objects.write(name, 0, version(name, 4), { truncate: true });
    await objects.flush();
    for (const name of byWrite) await assertCurrent(cluster, name, version(name, 4));
    // Healing replaces the copies nobody wrote since.
    for (const name of byHealing) {
      const victimCopy = await victim.engine.replica.read(name, 0, -1);
      assert.deepEqual(victimCopy.data, version(name, 1), "behind before healing");
    }
    await healAll(cluster);
    for (const name of byHealing) await assertCurrent(cluster, name, version(name, 2));
    await objects.settle();
  } finally {
    await cluster.stop();
  }
});

Deno.test("R=2: a suspect replica that does not answer is waited for, not skipped", async () => {
  const cluster = await TestCluster.start(3, { replicas: 2 });
  try {
    const [writerNode, victim] = cluster.nodes;
    const { blocks, objects } = writerOn(cluster, writerNode);
    const both = objectNames.filter((name) => {
      const ids = replicaIds(cluster, name);
      return ids.includes(victim.id) && ids.includes(writerNode.id);
    });
    assert.ok(both.length >= 2);
    const [written, fresh] = both;
    const before = patternBytes(8192, 1);
    await objects.write(written, 0, before, { truncate: true });
    await objects.write(fresh, 0, before, { truncate: true }); // not flushed

    await cluster.kill(victim);
    cluster.setStatus(victim, "suspect");
    const block = Array.from({ length: 64 }, (_, i) => patternBytes(4096, 100 + i))
      .find((bytes) => replicaIds(cluster, sha256Hex(bytes)).includes(victim.id))!;
    await assert.rejects(blocks.put(sha256Hex(block), block), /Cannot store block .*2 needed/);
    await assert.rejects(objects.flush(), ReplicaQuorumError, "not durable on both copies");
    const after = patternBytes(8192, 2);
    await assert.rejects(objects.write(written, 0, after, { truncate: true }), ReplicaQuorumError);
    // The writer's own copy did not change either.
    const own = await writerNode.engine.replica.read(written, 0, -1);
    assert.deepEqual(own.data, before);
    // A writer that learns the object's state afresh cannot either.
    const { objects: another } = writerOn(cluster, writerNode);
    await assert.rejects(another.write(fresh, 0, after, { truncate: true }), ReplicaQuorumError);
  } finally {
    await cluster.stop();
  }
});
