/**
 * Goal: an object a flush made durable on fewer replicas than placed (the
 * others did not answer, and the writer's bringing them up failed) is copied
 * on by the replica holding it as soon as they answer, though no member saw a
 * change: the writer tells that replica (ObjectLink.short) and its healer
 * walks at its next pass (seed 7001556 with joins, leaves and replacements:
 * the one copy waited for the anti-entropy walk and died for good first).
 * Method: ClusterEngines in process (R = 2) behind sealed RPC servers on
 * loopback; membership is a list the test controls; passes run on demand.
 */
import assert from "node:assert/strict";
import { Healer } from "./healer.ts";
import { TestCluster, testClusterKey } from "../../tests/_engine_cluster.ts";
import { MemoryIdentity, RpcClient } from "../transport/mod.ts";
import { patternBytes } from "../../tests/_files.ts";
import { stampNamesMax } from "../data/mod.ts";

Deno.test("a flush that left a replica behind gets the replica ahead to copy it on, with no change seen", async () => {
  const cluster = await TestCluster.start(3, { replicas: 2 });
  const rpc = new RpcClient(testClusterKey, new MemoryIdentity()); // adopts this cluster's id
  try {
    const [writer] = cluster.nodes;
    const { name, replicas: [ahead, behind] } = cluster.objectOff(writer, "f");
    await writer.engine.writeObject(name, 0, patternBytes(8192, 1), { truncate: true });
    await writer.engine.flush();
    const healer = new Healer({ engine: ahead.engine, rpc, intervalMs: 1000 });
    await healer.pass(); // the first pass walks
    await healer.pass();
    const walks = healer.status.walks;
    assert.equal(walks, 1, "all in place: one walk");

    // Down while the writer flushes (the flush needs one copy), back before the
    // healer's next pass, with the status it had at the healer's last walk.
    await cluster.kill(behind);
    await writer.engine.writeObject(name, 0, patternBytes(8192, 2), { existing: true });
    await writer.engine.flush();
    await writer.engine.objects.settle(); // its bringing `behind` up fails
    await cluster.revive(behind);
    const [newest] = await ahead.engine.replica.stamps([name]);
    assert.ok((await behind.engine.replica.stamps([name]))[0][1] < newest[1], "behind");

    await healer.pass();
    assert.equal(healer.status.walks, walks + 1, "told by the writer: a walk");
    assert.deepEqual(await behind.engine.replica.stamps([name]), [newest]);
    assert.deepEqual((await behind.engine.replica.read(name, 0, -1)).data, patternBytes(8192, 2));

    // What a peer may say is bounded: names of objects, at most stampNamesMax of them.
    const address = cluster.members.find((member) => member.id === ahead.id)!.address;
    const say = (names: unknown) => rpc.call(address, "object.short", { header: { names } });
    await assert.rejects(say(["../etc"]), /bad object name/);
    await assert.rejects(say(Array(stampNamesMax + 1).fill(name)), /bad names/);
    await say([name]);
    assert.equal(ahead.engine.replica.takeShort(), 1);
  } finally {
    await cluster.stop();
  }
});
