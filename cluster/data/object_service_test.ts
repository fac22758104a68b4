/**
 * Goal: a storing node refuses writes from a fenced-off lease holder, durably;
 * and it tells a writer that places an object elsewhere (`moved`).
 * Method: a LocalEngine behind a sealed RPC server on loopback; writes at epochs
 * 1 and 2, then a late write at epoch 1 (an old holder cut off by a partition);
 * the node restarts and still refuses it; the bytes are those of epoch 2.
 */
import assert from "node:assert/strict";
import { LocalEngine } from "../../core/mod.ts";
import { ClusterKey } from "../transport/mod.ts";
import { objectMethods } from "./object_rpc.ts";
import { type ObjectLink, placementDigest } from "./object_link.ts";
import {
  type LinkedReplicaOptions,
  withLinkedReplica as linkedReplica,
} from "../../tests/_linked_replica.ts";
import { ObjectReplica } from "./object_service.ts";
import { JournalDisk } from "./journal_disk.ts";
import { RpcClient, rpcServer } from "../transport/mod.ts";
import { MemoryIdentity } from "../transport/mod.ts";

const key = new ClusterKey(new TextEncoder().encode("object-service-test-key-01234567"));
const uid = "ab".repeat(16);
const name = `${uid}.1.0`;

async function startStorage(dir: string) {
  const engine = await LocalEngine.open({ dir });
  const replica = new ObjectReplica("n1", engine, { journal: new JournalDisk(`${dir}/journal`) });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    rpcServer(key, new MemoryIdentity(), objectMethods(replica)),
  );
  const stop = async () => {
    await server.shutdown();
    await replica.close();
    await engine.close();
  };
  return { address: `127.0.0.1:${server.addr.port}`, stop };
}

Deno.test("a write with an epoch below the fence never lands, even after a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-fence-" });
  const rpc = new RpcClient(key, new MemoryIdentity());
  let storage = await startStorage(dir);
  let version = 0;
  const write = (epoch: number, byte: number) =>
    rpc.call(storage.address, "object.change", {
      header: { name, offset: 0, epoch, version: ++version, replace: true },
      data: new Uint8Array(4096).fill(byte),
    });
  const read = async () =>
    (await rpc.call(storage.address, "object.read", { header: { name, offset: 0, length: 4096 } }))
      .data;
  try {
    await write(1, 0x11);
    await write(2, 0x22);
    await assert.rejects(write(1, 0x33), /epoch 2 holds its lease/);
    assert.deepEqual(await read(), new Uint8Array(4096).fill(0x22));
    await rpc.call(storage.address, "object.flush");

    await storage.stop();
    storage = await startStorage(dir);
    await assert.rejects(write(1, 0x44), /epoch 2 holds its lease/);
    assert.deepEqual(await read(), new Uint8Array(4096).fill(0x22));
    await write(3, 0x55);
    assert.deepEqual(await read(), new Uint8Array(4096).fill(0x55));
    await assert.rejects(write(2, 0x66), /epoch 3 holds its lease/);
    await assert.rejects(
      rpc.call(storage.address, "object.change", {
        header: { name: "../x", offset: 0, epoch: 9, version: 99 },
      }),
      /bad object name/,
    );
  } finally {
    await storage.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("healing brings a lagging copy up past the fence; writers at that epoch stay fenced", async () => {
  // A snapshot's frozen object keeps the stamp of the holder that wrote it (epoch 2); a later
  // holder raised the volume's fence to 4. Healing replaces the lagging copy whole with the
  // copy from elsewhere (seed 10090 with joins), and only when newer; a write at epoch 2 is
  // still refused, and healing never changes a copy in part.
  const dir = await Deno.makeTempDir({ prefix: "atoll-heal-fence-" });
  const rpc = new RpcClient(key, new MemoryIdentity());
  const storage = await startStorage(dir);
  const other = `${uid}.2.0`;
  const change = (header: Record<string, unknown>, byte: number) =>
    rpc.call(storage.address, "object.change", {
      header: { offset: 0, replace: true, ...header },
      data: new Uint8Array(4096).fill(byte),
    });
  const read = async () =>
    (await rpc.call(storage.address, "object.read", { header: { name, offset: 0, length: 4096 } }))
      .data;
  try {
    await change({ name, epoch: 1, version: 2 }, 0x11);
    await change({ name: other, epoch: 4, version: 1 }, 0x44); // the fence is 4 now
    await assert.rejects(change({ name, epoch: 2, version: 3 }, 0x22), /epoch 4 holds its lease/);
    const healed = await change({ name, epoch: 2, version: 3, heal: true }, 0x22);
    assert.equal(healed.header.applied, true);
    assert.deepEqual(await read(), new Uint8Array(4096).fill(0x22));
    // Not newer: left alone.
    const older = await change({ name, epoch: 1, version: 9, heal: true }, 0x33);
    assert.equal(older.header.applied, false);
    assert.deepEqual(await read(), new Uint8Array(4096).fill(0x22));
    await assert.rejects(
      change({ name, epoch: 2, version: 4, heal: true, replace: false }, 0x55),
      /healing only replaces copies whole/,
    );
  } finally {
    await storage.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a replica in this process reads into the caller's buffer when it is the right length", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-read-into-" });
  const engine = await LocalEngine.open({ dir });
  const replica = new ObjectReplica("n1", engine, { journal: new JournalDisk(`${dir}/journal`) });
  try {
    const bytes = new Uint8Array(8192).map((_, i) => i % 251);
    await replica.change(name, { epoch: 1, version: 1, offset: 0, data: bytes, replace: true });
    const into = new Uint8Array(4096);
    const read = await replica.read(name, 4096, 4096, into);
    assert.equal(read.data, into, "no buffer of its own, no copy");
    assert.deepEqual(into, bytes.subarray(4096));
    assert.deepEqual(read.stamp, [1, 1]);
    const other = await replica.read(name, 0, 100, into);
    assert.notEqual(other.data, into, "a buffer of another length is left alone");
    assert.deepEqual(other.data, bytes.subarray(0, 100));
  } finally {
    await replica.close();
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a replica's read asked after a change of the object returns that change with its stamp", async () => {
  // Reads of an object no change runs or waits on skip its lock (object_service.ts, read);
  // one asked while a change is under way must still wait for it. Both kinds of change:
  // a small one journalled whole, and a large one from a peer written in place around the
  // page cache, off the event loop.
  const dir = await Deno.makeTempDir({ prefix: "atoll-read-after-change-" });
  const engine = await LocalEngine.open({ dir });
  const replica = new ObjectReplica("n1", engine, { journal: new JournalDisk(`${dir}/journal`) });
  try {
    const size = 512 * 1024;
    await replica.change(name, {
      epoch: 1,
      version: 1,
      offset: 0,
      data: new Uint8Array(size).fill(1),
      replace: true,
    });
    for (const [version, length, fromPeer] of [[2, 4096, false], [3, size, true]] as const) {
      const data = new Uint8Array(length).fill(version);
      const changed = replica.change(name, { epoch: 1, version, offset: 0, data }, { fromPeer });
      const read = await replica.read(name, 0, 4096);
      assert.deepEqual(read.stamp, [1, version], `the read waited for version ${version}`);
      assert.deepEqual(read.data, new Uint8Array(4096).fill(version));
      assert.equal((await changed).applied, true);
      // With nothing under way, the stamp and the bytes are those of the last change.
      const idle = await replica.read(name, length - 4096, 4096);
      assert.deepEqual(idle.stamp, [1, version]);
      assert.deepEqual(idle.data, new Uint8Array(4096).fill(version));
    }
  } finally {
    await replica.close();
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** An ObjectReplica on a LocalEngine in a temporary directory, behind a link server. */
/** A replica behind a link server in a temporary directory (tests/_linked_replica.ts). */
async function withLinkedReplica(
  options: LinkedReplicaOptions,
  run: (remote: ObjectLink) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-linked-replica-" });
  try {
    await linkedReplica(dir, options, run);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("reads over links from reused buffers on both ends never mix the bytes of two reads", () =>
  withLinkedReplica({}, async (remote) => {
    const contents = Array.from({ length: 8 }, (_, i) => new Uint8Array(1 << 20).fill(i + 1));
    for (const [i, data] of contents.entries()) {
      await remote.change(`${uid}.1.${i}`, {
        epoch: 1,
        version: 1,
        offset: 0,
        data,
        replace: true,
      });
    }
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 32 }, async (_, k) => {
        const i = (k * 5 + round) % 8;
        const into = new Uint8Array(1 << 20);
        const { data, release } = await remote.read(`${uid}.1.${i}`, 0, into.length, into);
        into.set(data);
        release?.();
        assert.ok(into.every((byte) => byte === i + 1), `object ${i} read whole and alone`);
      }));
    }
  }));

Deno.test("a replica that places an object elsewhere than its writer says so over a link", () =>
  withLinkedReplica({ placementOf: () => placementDigest(["n1", "n3"]) }, async (remote) => {
    const change = (version: number, placement?: number) =>
      remote.change(name, { epoch: 1, version, offset: 0, data: new Uint8Array(512), placement });
    const same = await change(1, placementDigest(["n3", "n1"]));
    assert.deepEqual(same, { applied: true, stamp: [1, 1], moved: false });
    const other = await change(2, placementDigest(["n1", "n2"]));
    assert.deepEqual(other, { applied: true, stamp: [1, 2], moved: true });
    const none = await change(3);
    assert.deepEqual(none, { applied: true, stamp: [1, 3], moved: false }, "no digest: no check");
  }));
