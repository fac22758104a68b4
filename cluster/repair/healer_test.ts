/**
 * Goal: healing brings every block, object and metadata key back to R copies
 * after a death (only once the grace period is over), moves a joined member's
 * share to it and removes copies from members that are no longer replicas, a
 * replica back with an old copy of an object takes the newest, and scrub
 * replaces a corrupt copy.
 * Method: ClusterEngines in process (R = 3) behind sealed RPC servers on
 * loopback; membership is a list the test controls; passes run on demand.
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../data/mod.ts";
import { Healer } from "./healer.ts";
import {
  TestCluster,
  type TestCluster as Cluster,
  testClusterKey,
} from "../../tests/_engine_cluster.ts";
import { RpcClient } from "../transport/mod.ts";
import { MemoryIdentity } from "../transport/mod.ts";
import { patternBytes } from "../../tests/_files.ts";

const rpc = new RpcClient(testClusterKey, new MemoryIdentity());

async function healAll(cluster: Cluster, passes = 2): Promise<void> {
  for (let i = 0; i < passes; i++) {
    for (const node of cluster.nodes.filter((node) => node.server !== null)) {
      await new Healer({ engine: node.engine, rpc, intervalMs: 1000 }).pass();
    }
  }
}

async function holders(cluster: Cluster, hash: string): Promise<string[]> {
  const ids = [];
  for (const node of cluster.nodes) {
    if (node.server !== null && await node.engine.local.hasBlock(hash)) ids.push(node.id);
  }
  return ids.sort();
}

async function objectHolders(cluster: Cluster, name: string): Promise<string[]> {
  const ids = [];
  for (const node of cluster.nodes) {
    if (node.server === null) continue;
    for await (const stored of node.engine.local.listObjects()) {
      if (stored === name) ids.push(node.id);
    }
  }
  return ids.sort();
}

Deno.test("healing: re-replication after the grace period, handoff on join, scrub", async () => {
  const cluster = await TestCluster.start(4, { deadGraceMs: 5_000 });
  try {
    const writer = cluster.nodes[0];
    const blocks = Array.from({ length: 40 }, (_, i) => patternBytes(4096 + i, i));
    const hashes = blocks.map(sha256Hex);
    for (let i = 0; i < blocks.length; i++) await writer.engine.putBlock(hashes[i], blocks[i]);
    const objects = Array.from({ length: 6 }, (_, i) => `${"d".repeat(32)}.1.${i}`);
    for (const name of objects) {
      await writer.engine.writeObject(name, 0, patternBytes(8192, name.length), { truncate: true });
    }
    await writer.engine.flush();
    for (let i = 0; i < 10; i++) {
      await writer.engine.putMeta(`volume/v${i}`, new TextEncoder().encode(`v${i}`), 0);
    }

    // A replica dies: inside the grace period nothing moves.
    const victim = cluster.nodes[1];
    await cluster.kill(victim);
    await healAll(cluster);
    const placed = hashes.filter((hash) =>
      writer.engine.replicaPeers(hash).some((peer) => peer.id === victim.id)
    );
    assert.ok(placed.length > 0);
    for (const hash of placed) assert.equal((await holders(cluster, hash)).length, 2, hash);

    // After the grace period, every block and object is back to 3 copies.
    const member = cluster.members.find((member) => member.id === victim.id)!;
    member.since -= 10_000;
    for (const node of cluster.nodes) node.engine.invalidate();
    await healAll(cluster);
    for (const hash of hashes) {
      const expected = writer.engine.replicaPeers(hash).map((peer) => peer.id).sort();
      assert.deepEqual(await holders(cluster, hash), expected, hash);
    }
    for (const name of objects) {
      const expected = writer.engine.replicaPeers(name).map((peer) => peer.id).sort();
      assert.deepEqual(await objectHolders(cluster, name), expected, name);
    }

    // Two members join one after the other: each receives its share, old copies go.
    for (let joined = 0; joined < 2; joined++) {
      const newcomer = await cluster.add();
      await healAll(cluster);
      let share = 0;
      for (const hash of hashes) {
        const expected = writer.engine.replicaPeers(hash).map((peer) => peer.id).sort();
        assert.deepEqual(await holders(cluster, hash), expected, hash);
        if (expected.includes(newcomer.id)) share++;
      }
      assert.ok(share > 0, "the newcomer holds its share");
    }
    for (const name of objects) {
      const expected = writer.engine.replicaPeers(name).map((peer) => peer.id).sort();
      assert.deepEqual(await objectHolders(cluster, name), expected, name);
      const into = new Uint8Array(8192);
      await cluster.nodes.at(-1)!.engine.readObject(name, { offset: 0, length: 8192 }, into);
      assert.deepEqual(into, patternBytes(8192, name.length));
    }
    // Metadata followed its acceptors: all ten keys read back on the newest node.
    const newest = cluster.nodes.at(-1)!;
    for (let i = 0; i < 10; i++) {
      const entry = await newest.engine.getMeta(`volume/v${i}`);
      assert.deepEqual(entry?.value, new TextEncoder().encode(`v${i}`));
    }
    assert.equal((await newest.engine.listMeta("volume/")).length, 10);

    // Scrub: a corrupt copy is found and replaced from a replica.
    const hash = hashes[0];
    const holder = cluster.nodes.find((node) =>
      node.server !== null && writer.engine.replicaPeers(hash).some((peer) => peer.id === node.id)
    )!;
    const path = `${holder.dir}/blocks/${hash.slice(0, 2)}/${hash}`;
    const bad = blocks[0].slice();
    bad[7] ^= 1;
    await Deno.writeFile(path, bad);
    const healer = new Healer({
      engine: holder.engine,
      rpc,
      intervalMs: 1000,
      scrubBlocksPerPass: 1000,
    });
    await healer.pass();
    assert.equal(healer.status.corruptBlocksRepaired, 1);
    assert.equal(sha256Hex(await Deno.readFile(path)), hash);
  } finally {
    await cluster.stop();
  }
});

Deno.test("healing walks every item after a change or as anti-entropy, not on every pass", async () => {
  const cluster = await TestCluster.start(3);
  const rpc = new RpcClient(testClusterKey, new MemoryIdentity()); // adopts this cluster's id
  try {
    const writer = cluster.nodes[0];
    const blocks = Array.from({ length: 6 }, (_, i) => patternBytes(4096 + i, i));
    const hashes = blocks.map(sha256Hex);
    for (let i = 0; i < blocks.length; i++) await writer.engine.putBlock(hashes[i], blocks[i]);
    const healers = cluster.nodes.map((node) =>
      new Healer({ engine: node.engine, rpc, intervalMs: 1000, scrubBlocksPerPass: 1 })
    );
    const passAll = async () => {
      for (const healer of healers) await healer.pass();
    };
    // The first pass of each walks, and so do the next ones while a walk finds work.
    const walks = () => healers.map((healer) => healer.status.walks);
    let settled = walks();
    for (let i = 0; i < 5; i++) {
      await passAll();
      const now = walks();
      if (now.every((n, j) => n === settled[j]) && i > 0) break;
      settled = now;
    }
    assert.ok(settled.every((n) => n >= 1 && n <= 3), `walks ${settled}`);
    const lose = async () => {
      const node = cluster.nodes[2];
      await node.engine.local.deleteBlock(hashes[0]);
      await node.engine.local.flush();
    };
    await lose();
    const scrubbed = healers.map((healer) => healer.status.blocksScrubbed);
    await passAll();
    assert.deepEqual(walks(), settled, "nothing announced a change: no walk");
    assert.ok(!(await cluster.nodes[2].engine.local.hasBlock(hashes[0])));
    assert.deepEqual(
      healers.map((healer, i) => healer.status.blocksScrubbed - scrubbed[i]),
      [1, 1, 1],
      "but each pass scrubs",
    );

    for (const healer of healers) healer.nudge(); // as a membership change does
    await passAll();
    assert.deepEqual(walks(), settled.map((n) => n + 1));
    assert.ok(await cluster.nodes[2].engine.local.hasBlock(hashes[0]), "the walk copied it back");

    // A change the healer sees in the members themselves (no nudge): a walk.
    await passAll(); // the walk above copied: this one walks again and finds all in place
    await passAll();
    const before = walks();
    await lose();
    cluster.members[1].incarnation++; // as a refuted suspicion does
    for (const node of cluster.nodes) node.engine.invalidate();
    await passAll();
    assert.deepEqual(walks(), before.map((n) => n + 1));
    assert.ok(await cluster.nodes[2].engine.local.hasBlock(hashes[0]), "copied back");

    // Anti-entropy: with no event at all, a walk still comes within antiEntropyMs.
    await lose();
    const eager = cluster.nodes.map((node) =>
      new Healer({ engine: node.engine, rpc, intervalMs: 1000, antiEntropyMs: 0 })
    );
    for (const healer of eager) await healer.pass();
    for (const healer of eager) await healer.pass();
    assert.deepEqual(eager.map((healer) => healer.status.walks), [2, 2, 2]);
    assert.ok(await cluster.nodes[2].engine.local.hasBlock(hashes[0]));
  } finally {
    await cluster.stop();
  }
});

Deno.test("scrub goes through every local block in turn, one per pass", async () => {
  const cluster = await TestCluster.start(1);
  const rpc = new RpcClient(testClusterKey, new MemoryIdentity()); // adopts this cluster's id
  try {
    const [node] = cluster.nodes;
    const blocks = Array.from({ length: 5 }, (_, i) => patternBytes(4096 + i, i));
    for (const block of blocks) await node.engine.putBlock(sha256Hex(block), block);
    const healer = new Healer({ engine: node.engine, rpc, intervalMs: 1000 });
    const hashes = blocks.map(sha256Hex).sort();
    const bad = hashes[3];
    const data = await Deno.readFile(`${node.dir}/blocks/${bad.slice(0, 2)}/${bad}`);
    data[0] ^= 1;
    await Deno.writeFile(`${node.dir}/blocks/${bad.slice(0, 2)}/${bad}`, data);
    for (let i = 0; i < 3; i++) await healer.pass();
    assert.equal(healer.status.blocksScrubbed, 3);
    assert.equal(healer.status.corruptBlocksRepaired, 0, "the fourth block is not reached yet");
    await healer.pass();
    assert.equal(healer.status.blocksScrubbed, 4);
    assert.equal(
      healer.status.errors + healer.status.corruptBlocksRepaired,
      1,
      "found at its turn",
    );
    for (let i = 0; i < 6; i++) await healer.pass();
    assert.equal(healer.status.blocksScrubbed, 10, "round and round");
  } finally {
    await cluster.stop();
  }
});

Deno.test("a put that missed a replica reaches it once it is back, though its writer holds no copy", async () => {
  // Seed 700586 (joins, leaves, replacements) at 9231d01: an upload's node, no replica of
  // a block, stored it on one replica of two while it saw the other dead; its hint was
  // dropped for want of a local copy, no walk came before the one holder died for good,
  // and the block was lost.
  const cluster = await TestCluster.start(3, { replicas: 2 });
  const rpc = new RpcClient(testClusterKey, new MemoryIdentity()); // adopts this cluster's id
  try {
    const [writer] = cluster.nodes;
    let data = patternBytes(4096, 0);
    for (
      let i = 1;
      writer.engine.replicaPeers(sha256Hex(data)).some((p) => p.id === writer.id);
      i++
    ) {
      data = patternBytes(4096, i);
    }
    const hash = sha256Hex(data);
    const [first, second] = writer.engine.replicaPeers(hash)
      .map((peer) => cluster.nodes.find((node) => node.id === peer.id)!);
    await cluster.kill(second); // dead: the put needs one copy
    await writer.engine.putBlock(hash, data);
    assert.deepEqual(await holders(cluster, hash), [first.id]);
    await cluster.revive(second);
    // Only the writer's healer runs (its walk finds no local copy): no walk of the
    // holder's covers for the hint.
    await new Healer({ engine: writer.engine, rpc, intervalMs: 1000 }).pass();
    assert.deepEqual(await holders(cluster, hash), [first.id, second.id].sort());
    assert.ok(!(await writer.engine.local.hasBlock(hash)), "the writer kept no copy");
  } finally {
    await cluster.stop();
  }
});

Deno.test("a replica back from a death takes the flush it missed from the other, whose healer does not walk", async () => {
  // Seed 2109064 (joins, leaves, replacements): R = 2, a flush made an object durable on
  // one replica while the other was down; that one came back, its walk saw it was behind
  // and left the copy to the replica ahead, which saw no change, did not walk, and died for
  // good with the only copy. The replica behind now takes it.
  const cluster = await TestCluster.start(3, { replicas: 2 });
  const rpc = new RpcClient(testClusterKey, new MemoryIdentity()); // adopts this cluster's id
  try {
    const [writer] = cluster.nodes;
    const { name, replicas: [ahead, behind] } = cluster.objectOff(writer, "e");
    await writer.engine.writeObject(name, 0, patternBytes(8192, 1), { truncate: true });
    await writer.engine.flush();
    await cluster.kill(behind); // dead: the flush needs one copy
    await writer.engine.writeObject(name, 0, patternBytes(8192, 2), { existing: true });
    await writer.engine.flush();
    await cluster.revive(behind);
    const [newest] = await ahead.engine.replica.stamps([name]);
    assert.ok((await behind.engine.replica.stamps([name]))[0][1] < newest[1], "behind");
    await new Healer({ engine: behind.engine, rpc, intervalMs: 1000 }).pass();
    assert.deepEqual(await behind.engine.replica.stamps([name]), [newest]);
    const { data } = await behind.engine.replica.read(name, 0, -1);
    assert.deepEqual(data, patternBytes(8192, 2));
  } finally {
    await cluster.stop();
  }
});
