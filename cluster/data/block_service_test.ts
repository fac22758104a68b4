/**
 * Goal: blocks written through one node land on their replicas, any node reads
 * them back verified, and a corrupt or missing copy is detected and repaired; a
 * read fails only when no live member holds a good copy (a local copy that
 * vanishes under the read, replicas that are new after a join).
 * Method: three to five nodes in process, each a LocalEngine behind a sealed RPC
 * server on loopback, placement by rendezvous with R = 2.
 */
import assert from "node:assert/strict";
import { LocalEngine, UnavailableError } from "../../core/mod.ts";
import { ClusterKey } from "../transport/mod.ts";
import { type BlockPeer, ReplicatedBlocks, type ReplicatedBlocksOptions } from "./block_service.ts";
import { blockMethods, blockMethodsPooled, sha256Hex } from "./block_rpc.ts";
import { Placement } from "../placement/mod.ts";
import { RpcClient, type RpcMessage, rpcServer } from "../transport/mod.ts";
import { LinkClient, MemoryIdentity } from "../transport/mod.ts";
import { key as linkKey, startPort } from "../../tests/_link_proxy.ts";
import { patternBytes } from "../../tests/_files.ts";

const key = new ClusterKey(new TextEncoder().encode("block-service-test-key-012345678"));

async function startNodes(count: number) {
  const nodes = await Promise.all(Array.from({ length: count }, async (_, i) => {
    const dir = await Deno.makeTempDir({ prefix: "atoll-blocks-" });
    const engine = await LocalEngine.open({ dir });
    // What the node's process remembers (batch counts): forget() starts it afresh, as a restart.
    let methods = blockMethods(engine);
    const served = Object.fromEntries(
      Object.keys(methods).map((name) => [name, (request: RpcMessage) => {
        if (methods[name] === undefined) throw new TypeError(`unknown method ${name}`); // as served
        return methods[name](request);
      }]),
    );
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      rpcServer(key, new MemoryIdentity(), served),
    );
    const forget = () => methods = blockMethods(engine);
    /** Serves as a version before batches did: every put synced before its answer, no settle. */
    const before = () => {
      const { "block.settle": _, ...rest } = blockMethods(engine);
      methods = {
        ...rest,
        "block.put": (request: RpcMessage) =>
          rest["block.put"]({ ...request, header: { ...request.header, batch: undefined } }),
      };
    };
    return {
      id: `node-${i}`,
      address: `127.0.0.1:${server.addr.port}`,
      dir,
      engine,
      server,
      forget,
      before,
    };
  }));
  const placement = new Placement(nodes.map((n) => ({ id: n.id, weight: 1, zone: null })));
  const peers = new Map<string, BlockPeer>(nodes.map((n) => [n.id, n]));
  const replicasOf = (name: string) => placement.replicas(name, 2).map((id) => peers.get(id)!);
  /** A block service of `node`; the test's own options win. */
  const serviceOf = (node: typeof nodes[number], options: Partial<ReplicatedBlocksOptions> = {}) =>
    new ReplicatedBlocks({
      selfId: node.id,
      engine: node.engine,
      rpc: new RpcClient(key, new MemoryIdentity()),
      replicasOf,
      lostConfirmMs: 0, // a read that finds the block nowhere looks again at once
      ...options,
    });
  const services = nodes.map((node) => serviceOf(node));
  const stop = async () => {
    for (const node of nodes) {
      await node.server.shutdown();
      await node.engine.close();
      await Deno.remove(node.dir, { recursive: true });
    }
  };
  return { nodes, peers, services, serviceOf, replicasOf, stop };
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
    const forged = await new RpcClient(key, new MemoryIdentity()).call(
      second.address,
      "block.put",
      {
        header: { hash: "0".repeat(64) },
        data,
      },
    ).catch((error) => error);
    assert.match(String(forged), /do not match its name/);
  } finally {
    await stop();
  }
});

/**
 * The engine of `engine`'s node as a read sees it when healing hands the block
 * off (or GC collects it) right after hasBlock() said it was here: the first
 * hasBlock() that answers true for `hash` deletes it before returning.
 */
function losingAfterHas(engine: LocalEngine, hash: string): LocalEngine {
  let armed = true;
  return new Proxy(engine, {
    get(target, property) {
      if (property === "hasBlock") {
        return async (name: string) => {
          const has = await target.hasBlock(name);
          if (has && armed && name === hash) {
            armed = false;
            await target.deleteBlock(name);
          }
          return has;
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("read() takes a replica's copy when the local one vanishes after has()", async () => {
  const { nodes, serviceOf, services, replicasOf, stop } = await startNodes(3);
  try {
    const data = patternBytes(512 * 1024, 11);
    const hash = sha256Hex(data);
    await services[0].put(hash, data);
    const holder = nodes.find((node) => node.id === replicasOf(hash)[0].id)!;
    const racing = serviceOf(holder, { engine: losingAfterHas(holder.engine, hash) });
    const into = new Uint8Array(4096);
    await racing.read(hash, { offset: 8192, length: 4096 }, into);
    assert.deepEqual(into, data.subarray(8192, 8192 + 4096));
    assert.equal(racing.counters.localMisses, 1, "the local read missed");
    assert.equal(racing.counters.fetched, 1, "then the other replica's copy was read");
    assert.equal(await holder.engine.hasBlock(hash), true, "and kept here again");
  } finally {
    await stop();
  }
});

Deno.test("read() finds a block on a live member when no placed replica holds it", async () => {
  // A join: the block was written while three members were placed; two members
  // joined and placement now names only them, before healing moved anything.
  const { nodes, peers, serviceOf, stop } = await startNodes(5);
  try {
    const before = new Placement(
      nodes.slice(0, 3).map((n) => ({ id: n.id, weight: 1, zone: null })),
    );
    const after = new Placement(nodes.map((n) => ({ id: n.id, weight: 1, zone: null })));
    const joined = new Set([nodes[3].id, nodes[4].id]);
    let data = new Uint8Array();
    for (let seed = 1; seed < 1000; seed++) {
      data = patternBytes(64 * 1024, seed);
      if (after.replicas(sha256Hex(data), 2).every((id) => joined.has(id))) break;
    }
    const hash = sha256Hex(data);
    assert.ok(
      after.replicas(hash, 2).every((id) => joined.has(id)),
      "a block placed on new members",
    );
    const holders = before.replicas(hash, 2);
    for (const id of holders) {
      const engine = nodes.find((node) => node.id === id)!.engine;
      await engine.putBlock(hash, data);
      await engine.flush();
    }
    const replicasOf = (name: string) => after.replicas(name, 2).map((id) => peers.get(id)!);
    const allPeers = () => [...peers.values()];
    const reader = nodes.slice(0, 3).find((node) => !holders.includes(node.id))!;

    const alone = serviceOf(reader, { replicasOf });
    const refused = await alone.read(hash, { offset: 0, length: 10 }, new Uint8Array(10))
      .catch((error) => error);
    assert.match(String(refused), /CorruptionError: .*no live member holds a good copy/);

    const service = serviceOf(reader, { replicasOf, allPeers });
    const into = new Uint8Array(data.length);
    await service.read(hash, { offset: 0, length: data.length }, into);
    assert.deepEqual(into, data);
    assert.equal(service.counters.foundElsewhere, 1);
    // The placed replicas that lacked it were given the good copy on the way.
    const placed = [...joined].map((id) => nodes.find((node) => node.id === id)!.engine);
    for (
      let i = 0;
      i < 100 && !(await Promise.all(placed.map((e) => e.hasBlock(hash)))).every(Boolean);
      i++
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const engine of placed) assert.equal(await engine.hasBlock(hash), true);
  } finally {
    await stop();
  }
});

Deno.test("read() fails only when no live member holds a good copy", async () => {
  const { nodes, peers, serviceOf, stop } = await startNodes(3);
  try {
    const data = patternBytes(64 * 1024, 5);
    const hash = sha256Hex(data);
    // A bad copy on one member, none anywhere else.
    const corrupt = data.slice();
    corrupt[0] ^= 1;
    await nodes[2].engine.putBlock(hash, corrupt);
    await nodes[2].engine.flush();
    const service = serviceOf(nodes[0], { allPeers: () => [...peers.values()] });
    const error = await service.read(hash, { offset: 0, length: 1 }, new Uint8Array(1))
      .catch((error) => error);
    assert.match(
      String(error),
      /CorruptionError: Cannot read block .*: no live member holds a good copy/,
    );
    // A member down lately (gossip called it dead, nobody declared it lost) may hold it.
    const awaiting = serviceOf(nodes[0], {
      allPeers: () => [...peers.values()],
      awayMembers: () => ["node-9"],
    });
    const away = await awaiting.read(hash, { offset: 0, length: 1 }, new Uint8Array(1))
      .catch((error) => error);
    assert.ok(away instanceof UnavailableError, String(away));
    assert.match(String(away), /ReplicaQuorumError: .*away: node-9/);
    // A member that does not answer may hold it: unavailable, not corrupt.
    await nodes[1].server.shutdown();
    const waiting = await service.read(hash, { offset: 0, length: 1 }, new Uint8Array(1))
      .catch((error) => error);
    assert.ok(waiting instanceof UnavailableError, String(waiting));
    assert.match(String(waiting), /ReplicaQuorumError: .*\(2 asked, 1 unreachable\)/);
  } finally {
    await stop();
  }
});

Deno.test("a put that too few replicas take is unavailable, not a failure", async () => {
  // A request waits for what the cluster cannot do yet (core/patient_authority.ts): a
  // replica killed and not yet declared dead must not fail a guest's FLUSH that stores
  // map pages (deno task chaos, seed 33, 4 members, R=2: NBD EIO).
  const { nodes, services, replicasOf, stop } = await startNodes(3);
  try {
    const data = patternBytes(4096, 9);
    const hash = sha256Hex(data);
    const [first, second] = replicasOf(hash);
    const writer = nodes.findIndex((node) => node.id === first.id);
    await nodes.find((node) => node.id === second.id)!.server.shutdown();
    await assert.rejects(
      services[writer].put(hash, data),
      (error) =>
        error instanceof UnavailableError && error.name === "ReplicaQuorumError" &&
        /1 of 2 replicas took it, 2 needed/.test(error.message),
    );
  } finally {
    await stop();
  }
});

Deno.test("whole blocks sent over links from reused buffers never mix the bytes of two blocks", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-block-gets-" });
  const engine = await LocalEngine.open({ dir });
  const server = startPort({ methods: blockMethods(engine), pooledData: blockMethodsPooled });
  const links = new LinkClient(linkKey, new MemoryIdentity(), { selfId: "client" });
  try {
    const blocks = Array.from({ length: 6 }, (_, i) => new Uint8Array(4 << 20).fill(i + 1));
    const hashes = blocks.map((block) => sha256Hex(block));
    for (const [i, block] of blocks.entries()) await engine.putBlock(hashes[i], block);
    for (let round = 0; round < 8; round++) {
      // More blocks in flight than the server keeps buffers for (16 MiB: four).
      await Promise.all(Array.from({ length: 16 }, async (_, k) => {
        const i = (k * 5 + round) % blocks.length;
        const reply = await links.call(server.address, "block.get", {
          header: { hash: hashes[i] },
        });
        assert.equal(reply.header.found, true);
        assert.equal(sha256Hex(reply.data!), hashes[i], `block ${i} whole and alone`);
      }));
    }
  } finally {
    await links.close();
    await server.stop();
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Where a LocalEngine keeps block `hash` once it is durable (renamed into place by a flush). */
function blockPath(dir: string, hash: string): string {
  return `${dir}/blocks/${hash.slice(0, 2)}/${hash}`;
}

Deno.test("a batch's blocks are synced on their replicas at its settle, and a restart meanwhile fails it", async () => {
  const { nodes, services, replicasOf, stop } = await startNodes(3);
  try {
    const batch = services[0].batch();
    const blocks = Array.from({ length: 6 }, (_, i) => patternBytes(256 * 1024, 40 + i));
    const hashes = blocks.map(sha256Hex);
    for (const [i, data] of blocks.entries()) assert.equal(await batch.put(hashes[i], data), true);
    const held = (hash: string) =>
      replicasOf(hash).map((peer) => nodes.find((n) => n.id === peer.id)!);
    for (const hash of hashes) {
      for (const node of held(hash)) {
        assert.equal(await node.engine.hasBlock(hash), true, `${node.id} took ${hash}`);
        if (node !== nodes[0]) {
          assert.equal(await exists(blockPath(node.dir, hash)), false, `${node.id} synced early`);
        }
      }
    }
    await batch.settle();
    for (const hash of hashes) {
      for (const node of held(hash)) {
        assert.equal(await exists(blockPath(node.dir, hash)), true, `${node.id} holds ${hash}`);
      }
    }

    // A member restarts (forgets the batch) after taking blocks: they may be gone, and at
    // R = 2 no block is left on its quorum of two without it.
    const second = services[0].batch();
    const more = Array.from({ length: 6 }, (_, i) => patternBytes(256 * 1024, 60 + i));
    for (const data of more) await second.put(sha256Hex(data), data);
    const restarted = nodes.find((node) =>
      node !== nodes[0] && more.some((data) => held(sha256Hex(data)).includes(node))
    )!;
    restarted.forget();
    assert.equal(second.settle(), second.settle(), "a batch settles once");
    await assert.rejects(second.settle(), (error: Error) => {
      assert.ok(error instanceof UnavailableError, String(error));
      assert.match(error.message, new RegExp(`${restarted.id} \\(0 of \\d+\\).*store them again`));
      return true;
    });
  } finally {
    await stop();
  }
});

Deno.test("a batch whose blocks keep their quorum without a restarted member settles, noting it for handoff", async () => {
  const { nodes, peers, serviceOf, stop } = await startNodes(3);
  try {
    const everywhere = () => [...peers.values()]; // R = 3 on three nodes: a quorum of two
    const service = serviceOf(nodes[0], { replicasOf: everywhere });
    const batch = service.batch();
    const blocks = Array.from({ length: 3 }, (_, i) => patternBytes(64 * 1024, 80 + i));
    for (const data of blocks) await batch.put(sha256Hex(data), data);
    nodes[2].forget();
    await batch.settle();
    for (const data of blocks) {
      const hash = sha256Hex(data);
      assert.deepEqual([...service.hints.get(hash) ?? []], [nodes[2].id], `handoff of ${hash}`);
      for (const node of nodes.slice(0, 2)) {
        assert.equal(await exists(blockPath(node.dir, hash)), true, `${node.id} holds ${hash}`);
      }
    }
  } finally {
    await stop();
  }
});

Deno.test("a member of a version before batches syncs each block it takes, and counts for them", async () => {
  const { nodes, services, replicasOf, stop } = await startNodes(3);
  try {
    for (const node of nodes.slice(1)) node.before();
    const batch = services[0].batch();
    const blocks = Array.from({ length: 6 }, (_, i) => patternBytes(64 * 1024, 120 + i));
    for (const data of blocks) await batch.put(sha256Hex(data), data);
    for (const data of blocks) {
      const hash = sha256Hex(data);
      for (const peer of replicasOf(hash).filter((peer) => peer.id !== nodes[0].id)) {
        const node = nodes.find((n) => n.id === peer.id)!;
        assert.equal(await exists(blockPath(node.dir, hash)), true, `${node.id} synced ${hash}`);
      }
    }
    await batch.settle(); // no block.settle there: the puts were synced already
    assert.equal(services[0].hints.size, 0);
  } finally {
    await stop();
  }
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
