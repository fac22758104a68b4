/**
 * Goal: CASPaxos over real sockets and real data directories keeps metadata
 * consistent: compare-and-set from several nodes never lets two writers win,
 * and acceptor state (and the configuration learned from rounds) survives a
 * restart. Method: three acceptors, each with its own acceptor log and
 * configuration file in a data directory and a sealed RPC server on loopback,
 * and proposers on each.
 */
import assert from "node:assert/strict";
import { ClusterKey } from "../transport/mod.ts";
import { MemoryIdentity } from "../transport/mod.ts";
import { RpcClient, rpcServer } from "../transport/mod.ts";
import { Acceptor } from "./acceptor.ts";
import { NoQuorumError, type Register } from "./caspaxos.ts";
import type { MetaConfig } from "./config.ts";
import { acceptorMethods, rpcAcceptorLink } from "./meta_service.ts";
import { AcceptorLog } from "./acceptor_log.ts";
import { NodeConfig } from "./node_config.ts";
import { fileConfigDisk } from "./disk_env.ts";
import { Proposer } from "./proposer.ts";

const key = new ClusterKey(new TextEncoder().encode("meta-service-test-key-0123456789"));
const clusterId = "0123456789abcdef0123456789abcdef";
const config: MetaConfig = { epoch: 1, clusterId, voters: ["v0", "v1", "v2"], next: null };

/** A node's configuration kept in its data directory. */
function nodeConfig(dir: string): NodeConfig {
  const saved = fileConfigDisk(`${dir}/cluster.json`);
  return new NodeConfig(saved.state, saved.disk);
}

async function startAcceptorNode(dir?: string) {
  dir ??= await Deno.makeTempDir({ prefix: "atoll-px-" });
  const store = new AcceptorLog(`${dir}/paxos`);
  const configs = nodeConfig(dir);
  const acceptor = new Acceptor(store, configs);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    rpcServer(key, new MemoryIdentity(clusterId), acceptorMethods(acceptor, store, configs)),
  );
  const address = `127.0.0.1:${server.addr.port}`;
  const stop = async () => {
    await server.shutdown();
    store.close();
  };
  return { dir, address, stop };
}

/** A compare-and-set in the Engine's terms: succeeds only from `expected`. */
function cas(value: string, expected: number) {
  return (current: Register): Register => {
    if (current.version !== expected) throw new RangeError(`version is ${current.version}`);
    return { version: expected + 1, value: new TextEncoder().encode(value) };
  };
}

Deno.test("compare-and-set through CASPaxos over RPC lets exactly one writer win", async () => {
  const nodes = await Promise.all([0, 1, 2].map(() => startAcceptorNode()));
  const rpc = new RpcClient(key, new MemoryIdentity(clusterId));
  const dirs: string[] = [];
  const proposer = async (node: string) => {
    const dir = await Deno.makeTempDir({ prefix: "atoll-px-proposer-" });
    dirs.push(dir);
    const configs = nodeConfig(dir);
    await configs.install(config);
    return new Proposer({
      node,
      configs,
      link: (id) => rpcAcceptorLink(rpc, nodes[Number(id.slice(1))].address),
      random: () => 0,
    });
  };
  const proposers = await Promise.all(["n1", "n2", "n3"].map(proposer));
  try {
    for (let version = 0; version < 5; version++) {
      const results = await Promise.allSettled(
        proposers.map((proposer) => proposer.change("volume/vm1", cas(proposer.node, version))),
      );
      const winners = results.filter((result) => result.status === "fulfilled");
      assert.equal(winners.length, 1, `exactly one writer wins version ${version + 1}`);
    }
    const register = await proposers[0].read("volume/vm1");
    assert.equal(register.version, 5);

    // A restarted acceptor still knows what it accepted; one acceptor down is tolerated.
    await nodes[0].stop();
    nodes[0] = await startAcceptorNode(nodes[0].dir);
    await nodes[1].stop();
    const again = await (await proposer("n4")).read("volume/vm1");
    assert.equal(again.version, 5);
    assert.deepEqual(again.value, register.value);
    await nodes[2].stop();
    await assert.rejects((await proposer("n5")).read("volume/vm1"), NoQuorumError);
    // Acceptors keep the configuration they learned from the rounds, durably.
    assert.deepEqual(nodeConfig(nodes[0].dir).current(), config);
  } finally {
    for (const node of nodes) await node.stop().catch(() => {});
    for (const dir of [...nodes.map((node) => node.dir), ...dirs]) {
      await Deno.remove(dir, { recursive: true });
    }
  }
});
