/**
 * Goal: a read or a copy never takes what a replica holds now for what it held
 * when asked: a replica that gives its copy up between answering its stamp and
 * being read (healing handed the copy off) sends the read on to where the copy
 * went, and a copy to laggards never spreads a source's newer-than-asked state.
 * Method: three ObjectReplicas on their own LocalEngines in temp dirs; the
 * replica a read goes to first is down (an RPC link to a port nobody listens
 * on); replica B gives its copy up (ObjectReplica.drop, what healing calls)
 * right after it answers its stamp, as healing did between the two calls in
 * seed 40344 of the data-path simulation at 63cc354 (the read returned zeros).
 */
import assert from "node:assert/strict";
import { LocalEngine } from "../../core/mod.ts";
import { ClusterKey, MemoryIdentity, RpcClient } from "../transport/mod.ts";
import { readNewest } from "./_replica_copies.ts";
import { copyWhole } from "./_replica_learning.ts";
import type { ObjectChange, ObjectLink, Stamp } from "./object_link.ts";
import { rpcObjectLink } from "./object_rpc_link.ts";
import { ObjectReplica } from "./object_service.ts";
import { JournalDisk } from "./journal_disk.ts";

const uid = "cd".repeat(16);
const name = `${uid}.1.0`;
const stamp: Stamp = [2, 3];

/** A replica whose copy is handed off right after its stamp is asked. */
function handingOff(replica: ObjectReplica): ObjectLink {
  let handedOff = false;
  return {
    id: replica.id,
    change: (n, change) => replica.change(n, change),
    read: (n, offset, length) => replica.read(n, offset, length),
    stamps: async (names) => {
      const stamps = await replica.stamps(names);
      if (!handedOff) handedOff = await replica.drop(name, stamp);
      return stamps;
    },
    flush: (names) => replica.flush(names),
    short: (names) => replica.short(names),
  };
}

async function withReplicas(
  run: (replicas: ObjectReplica[], down: ObjectLink) => Promise<void>,
): Promise<void> {
  const dirs = await Promise.all([0, 1, 2].map(() => Deno.makeTempDir({ prefix: "atoll-rc-" })));
  const engines = await Promise.all(dirs.map((dir) => LocalEngine.open({ dir })));
  const replicas = engines.map((engine, i) =>
    new ObjectReplica(`n${i}`, engine, { journal: new JournalDisk(`${dirs[i]}/journal`) })
  );
  const key = new ClusterKey(new TextEncoder().encode("replica-copies-test-key-01234567"));
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `127.0.0.1:${(closed.addr as Deno.NetAddr).port}`;
  closed.close();
  const down = rpcObjectLink(new RpcClient(key, new MemoryIdentity()), "n9", address);
  try {
    const bytes = new Uint8Array(8192).fill(0x5a);
    const change: ObjectChange = {
      epoch: stamp[0],
      version: stamp[1],
      replace: true,
      offset: 0,
      data: bytes,
    };
    for (const replica of replicas.slice(1)) {
      assert.equal((await replica.change(name, change)).applied, true);
      await replica.flush([]);
    }
    await run(replicas, down);
  } finally {
    await Promise.all(replicas.map((replica) => replica.close()));
    await Promise.all(engines.map((engine) => engine.close()));
    await Promise.all(dirs.map((dir) => Deno.remove(dir, { recursive: true })));
  }
}

Deno.test("a copy handed off between its stamp and its read is read where it went", async () => {
  await withReplicas(async ([, b, c], down) => {
    const into = new Uint8Array(4096);
    const read = await readNewest(name, [down, handingOff(b)], 4096, into, {
      everyone: () => [down, b, c],
      floorOf: () => Promise.resolve([0, 0]),
    });
    assert.deepEqual(read.stamp, stamp);
    assert.equal(read.from.id, c.id);
    assert.ok(into.every((byte) => byte === 0x5a), "the bytes are the copy's, not zeros");
    assert.deepEqual(await b.stamps([name]), [[0, 0]], "b gave its copy up");
  });
});

Deno.test("a copy to laggards skips a source that no longer holds the stamp asked", async () => {
  await withReplicas(async ([a, b, c]) => {
    assert.equal(await b.drop(name, stamp), true);
    const copied = await copyWhole(name, [b, c], stamp, [a], [3, 1], 3, true);
    assert.deepEqual(copied.map((link) => link.id), [a.id]);
    const { data, stamp: written } = await a.read(name, 0, -1);
    assert.deepEqual(written, [3, 1]);
    assert.equal(data.length, 8192);
    assert.ok(data.every((byte) => byte === 0x5a), "c's bytes, not b's nothing");
  });
});

Deno.test("a look that must hear everyone asks the members its view calls gone, not waiting on silence", async () => {
  // Seeds 930578 and 851017 of the data-path simulation: the reader's view called the
  // members holding the newest copy dead or gone while they ran.
  await withReplicas(async ([a, b, c], down) => {
    const into = new Uint8Array(4096);
    const lookup = { everyone: () => [a], floorOf: () => Promise.resolve([0, 0] as Stamp) };
    await assert.rejects(
      readNewest(name, [a, down], 0, into, lookup, { existing: true }),
      /no member that answers holds a copy/,
    );
    const read = await readNewest(name, [a, down], 0, into, {
      ...lookup,
      seenGone: () => [down, b, c],
    }, { existing: true });
    assert.deepEqual(read.stamp, stamp);
    assert.ok([b.id, c.id].includes(read.from.id));
    assert.ok(into.every((byte) => byte === 0x5a));
  });
});

Deno.test("a version only read before is waited for from members gone within a grace, one made durable longer", async () => {
  // Seed 10014446 of the data-path simulation: a node had read a snapshot's object at a version
  // a taken-over writer never flushed; its one copy's member died for good.
  await withReplicas(async ([, b, c], down) => {
    const into = new Uint8Array(4096);
    const newer: Stamp = [stamp[0], stamp[1] + 1];
    const lookup = (lately: ObjectLink[]) => ({
      everyone: () => [b, c],
      seenGone: () => [down],
      goneWithinGrace: () => lately.map((link) => link.id),
      floorOf: () => Promise.resolve([0, 0] as Stamp),
    });
    await assert.rejects(
      readNewest(name, [b, c], 0, into, lookup([down]), { atLeast: newer, read: newer }),
      /known to exist/,
    );
    const read = await readNewest(name, [b, c], 0, into, lookup([]), {
      atLeast: newer,
      read: newer,
    });
    assert.deepEqual(read.stamp, stamp);
    await assert.rejects(
      readNewest(name, [b, c], 0, into, lookup([]), { atLeast: newer, durable: newer }),
      /known to exist/,
    );
  });
});
