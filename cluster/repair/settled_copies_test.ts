/**
 * Goal: a healing walk copies an object whole only to a replica that stays
 * behind, not to one a writer's change had not reached yet when asked: while
 * a volume was written, every walk found most of its objects "behind" on some
 * replica (the batch's stamps are asked before each object's own is read) and
 * copied 4 MiB for each, then walked again for as long as the writes went on
 * (a third of the IOPS of random 4 KiB writes at R = 3 went to it).
 * Method: ClusterEngines in process (R = 2) behind sealed RPC servers on
 * loopback; the replica ahead took a change the other takes only once the
 * walk has asked its stamps (the RPC caller the healer uses lets it land then).
 */
import assert from "node:assert/strict";
import { Healer } from "./healer.ts";
import { TestCluster, testClusterKey } from "../../tests/_engine_cluster.ts";
import { MemoryIdentity, type RpcCaller, RpcClient } from "../transport/mod.ts";
import { patternBytes } from "../../tests/_files.ts";
import type { ObjectChange } from "../data/mod.ts";

Deno.test("a walk copies an object only to a replica still behind once changes on their way landed", async () => {
  const cluster = await TestCluster.start(3, { replicas: 2 });
  const client = new RpcClient(testClusterKey, new MemoryIdentity()); // adopts this cluster's id
  try {
    const [writer] = cluster.nodes;
    const { name: landing, replicas: [ahead, behind] } = cluster.objectOff(writer, "a");
    // A second object with the same replicas, whose change never reaches `behind`.
    let stuck = `${"a".repeat(32)}.2.0`;
    for (let i = 1; !sameReplicas(writer, stuck, landing); i++) stuck = `${"a".repeat(32)}.2.${i}`;
    for (const name of [landing, stuck]) {
      await writer.engine.writeObject(name, 0, patternBytes(8192, 1), { truncate: true });
    }
    await writer.engine.flush();
    const changeOf = async (name: string): Promise<ObjectChange> => {
      const [[epoch, version]] = await ahead.engine.replica.stamps([name]);
      return { epoch, version: version + 1, offset: 4096, data: patternBytes(4096, 2) };
    };
    const changes = { landing: await changeOf(landing), stuck: await changeOf(stuck) };
    await ahead.engine.replica.change(landing, changes.landing);
    await ahead.engine.replica.change(stuck, changes.stuck);
    // `behind` takes the change to `landing` right after it answered the walk's first ask.
    let landed = false;
    const rpc: RpcCaller = {
      call: async (address, method, message, timeoutMs) => {
        const reply = await client.call(address, method, message, timeoutMs);
        if (method === "object.stamps" && !landed) {
          landed = true;
          await behind.engine.replica.change(landing, changes.landing);
        }
        return reply;
      },
    };
    const healer = new Healer({ engine: ahead.engine, rpc, intervalMs: 1000 });
    await healer.pass();
    assert.ok(landed, "the walk asked the stamps of `behind`");
    assert.equal(healer.status.objectsCopied, 1, "only the object still behind was copied");
    for (const name of [landing, stuck]) {
      assert.deepEqual(
        await behind.engine.replica.stamps([name]),
        await ahead.engine.replica.stamps([name]),
      );
      const { data } = await behind.engine.replica.read(name, 0, -1);
      assert.deepEqual(data.subarray(4096), patternBytes(4096, 2));
    }
  } finally {
    await cluster.stop();
  }
});

function sameReplicas(
  node: { engine: { replicaPeers(name: string): { id: string }[] } },
  a: string,
  b: string,
): boolean {
  const ids = (name: string) => node.engine.replicaPeers(name).map((peer) => peer.id).join();
  return ids(a) === ids(b);
}
