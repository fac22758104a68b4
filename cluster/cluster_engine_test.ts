/**
 * Goal: the cluster engine keeps the engine contract, so the core runs on it
 * unchanged; and it keeps working when a replica is gone.
 * Method: four ClusterEngines in process (R = 3, so some nodes are not replicas
 * of a name), each behind a sealed RPC server on loopback; the contract suite
 * runs against node 0, and "reopen" restarts every node on its data directory.
 */
import assert from "node:assert/strict";
import { engineContract } from "../core/engine_contract.ts";
import type { Engine } from "../core/mod.ts";
import { sha256Hex } from "./data/mod.ts";
import { TestCluster } from "../tests/_engine_cluster.ts";
import { patternBytes } from "../tests/_files.ts";

const clusters = new WeakMap<Engine, TestCluster>();

engineContract("ClusterEngine", {
  create: async () => {
    const cluster = await TestCluster.start(4);
    clusters.set(cluster.nodes[0].engine, cluster);
    return cluster.nodes[0].engine;
  },
  reopen: async (engine) => {
    const cluster = clusters.get(engine)!;
    await cluster.restart();
    clusters.set(cluster.nodes[0].engine, cluster);
    return cluster.nodes[0].engine;
  },
  destroy: async (engine) => {
    await clusters.get(engine)!.stop();
  },
});

Deno.test("ClusterEngine: any node reads what another wrote; a dead replica costs nothing", async () => {
  const cluster = await TestCluster.start(4);
  try {
    const [a, b] = cluster.nodes;
    const data = patternBytes(1024 * 1024, 3);
    const hash = sha256Hex(data);
    assert.equal(await a.engine.putBlock(hash, data), true);
    const object = `${"c".repeat(32)}.1.0`;
    await a.engine.writeObject(object, 0, data, { truncate: true });
    await a.engine.writeObject(object, 4096, patternBytes(4096, 9));
    await a.engine.flush();
    assert.equal(await a.engine.putMeta("volume/v", new Uint8Array([1, 2]), 0), 1);
    const expected = data.slice();
    expected.set(patternBytes(4096, 9), 4096);

    // Kill a replica of the object that is not the writer.
    const victim = cluster.nodes.find((node) =>
      node !== a && a.engine.replicaPeers(object).some((peer) => peer.id === node.id)
    )!;
    await cluster.kill(victim);
    const reader = cluster.nodes.find((node) => node !== a && node !== victim)!;
    const into = new Uint8Array(data.length);
    await reader.engine.readObject(object, { offset: 0, length: data.length }, into);
    assert.deepEqual(into, expected);
    const block = new Uint8Array(100);
    await reader.engine.readBlock(hash, { offset: 500, length: 100 }, block);
    assert.deepEqual(block, data.subarray(500, 600));
    assert.deepEqual((await b.engine.getMeta("volume/v"))?.value, new Uint8Array([1, 2]));

    // Writes go on with a replica down, and a revived replica catches up on write.
    await a.engine.writeObject(object, 0, patternBytes(4096, 11));
    await a.engine.flush();
    expected.set(patternBytes(4096, 11), 0);
    await cluster.revive(victim);
    await a.engine.writeObject(object, 8192, patternBytes(4096, 12));
    await a.engine.flush();
    await a.engine.objects.settle();
    expected.set(patternBytes(4096, 12), 8192);
    const copy = await victim.engine.replica.read(object, 0, data.length);
    assert.deepEqual(copy.data, expected, "the revived replica was brought up to date");
    await reader.engine.readObject(object, { offset: 0, length: data.length }, into);
    assert.deepEqual(into, expected);
  } finally {
    await cluster.stop();
  }
});

Deno.test("ClusterEngine: an object whose replicas died waits for them until they are declared lost", async () => {
  // lost_members.ts, data/_copy_checks.ts checkGone: two of an object's three replicas
  // dead past the grace may hold its only flushed copies; reads fail, naming them, until
  // an operator declares them lost, and then give up what only they held.
  const cluster = await TestCluster.start(5, { deadGraceMs: 1_000 });
  try {
    const writer = cluster.nodes[0];
    const object = `${"d".repeat(32)}.1.0`;
    await writer.engine.writeObject(object, 0, patternBytes(8192, 4), { truncate: true });
    await writer.engine.flush();
    const dead = cluster.nodes.filter((node) =>
      node !== writer && writer.engine.replicaPeers(object).some((peer) => peer.id === node.id)
    ).slice(0, 2);
    assert.equal(dead.length, 2, "the writer is one replica at most");
    for (const node of dead) await cluster.kill(node, 10_000); // dead past the grace
    const reader = cluster.nodes.find((node) => node !== writer && !dead.includes(node))!;
    const into = new Uint8Array(8192);
    await assert.rejects(
      reader.engine.readObject(object, { offset: 0, length: 8192 }, into),
      /replicas left or died lately and may hold its only up-to-date copies/,
    );
    // One declared lost: the other may still hold the only copies, and is waited for.
    await writer.engine.declareLost(dead[0].id);
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // past the reader's memory
    await assert.rejects(
      reader.engine.readObject(object, { offset: 0, length: 8192 }, into),
      /replicas left or died lately/,
    );
    await writer.engine.declareLost(dead[1].id);
    assert.deepEqual(writer.engine.lostMembers().sort(), dead.map((node) => node.id).sort());
    // The reader finds the declarations in the metadata by itself (it asks again a second
    // after it last found them not declared).
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await reader.engine.readObject(object, { offset: 0, length: 8192 }, into);
  } finally {
    await cluster.stop();
  }
});

Deno.test("ClusterEngine: an R=2 object whose one durable copy died for good reads its older copy once that member is declared lost", async () => {
  // data/object_floors.ts: a flush while one replica was dead made the object durable on
  // the other alone, and raised its floor naming that member; it then died for good and
  // the first came back with the version before. Reads refuse that version (nothing stale
  // is served) until an operator declares the dead member lost.
  const cluster = await TestCluster.start(4, { replicas: 2 });
  try {
    const [writer] = cluster.nodes;
    const { name: object, replicas: [ahead, behind] } = cluster.objectOff(writer, "f");
    const reader = cluster.nodes.find((node) => ![writer, ahead, behind].includes(node))!;
    await writer.engine.writeObject(object, 0, patternBytes(8192, 1), { truncate: true });
    await writer.engine.flush();
    await cluster.kill(behind); // dead: one copy makes the flush, and raises the floor
    await writer.engine.writeObject(object, 0, patternBytes(8192, 2), { existing: true });
    await writer.engine.flush();
    await writer.engine.objects.settle();
    await cluster.kill(ahead); // for good
    await cluster.revive(behind);
    const into = new Uint8Array(8192);
    const read = () => reader.engine.readObject(object, { offset: 0, length: 8192 }, into);
    await assert.rejects(read(), /below version .* that a flush made durable/);
    await writer.engine.declareLost(ahead.id);
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // past the reader's memory
    await read();
    assert.deepEqual(into, patternBytes(8192, 1));
  } finally {
    await cluster.stop();
  }
});
