/**
 * Goal: CASPaxos over real sockets and real data directories keeps metadata
 * consistent: compare-and-set from several nodes never lets two writers win,
 * and acceptor state survives a restart. Method: three acceptors, each with its
 * own acceptor log in a data directory and a sealed RPC server on loopback, and
 * proposers on each.
 */
import assert from "node:assert/strict";
import { ClusterKey } from "./auth.ts";
import { Acceptor, NoQuorumError, Proposer, type Register } from "./caspaxos.ts";
import { acceptorMethods, rpcAcceptorLink } from "./meta_service.ts";
import { AcceptorLog } from "./acceptor_log.ts";
import { RpcClient, rpcServer } from "./rpc.ts";
import { MemoryIdentity } from "../identity.ts";

const key = new ClusterKey(new TextEncoder().encode("meta-service-test-key-0123456789"));

async function startAcceptorNode(dir?: string) {
  dir ??= await Deno.makeTempDir({ prefix: "atoll-px-" });
  const store = new AcceptorLog(dir);
  const acceptor = new Acceptor(store);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    rpcServer(key, new MemoryIdentity(), acceptorMethods(acceptor, store)),
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
  const rpc = new RpcClient(key, new MemoryIdentity());
  const links = () => nodes.map((node) => rpcAcceptorLink(rpc, node.address));
  const proposers = ["n1", "n2", "n3"].map((id) => new Proposer(id, links));
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
    const again = await new Proposer("n4", links).read("volume/vm1");
    assert.equal(again.version, 5);
    assert.deepEqual(again.value, register.value);
    await nodes[2].stop();
    await assert.rejects(new Proposer("n5", links, () => 0).read("volume/vm1"), NoQuorumError);
  } finally {
    for (const node of nodes) await node.stop().catch(() => {});
    for (const node of nodes) await Deno.remove(node.dir, { recursive: true });
  }
});
