/**
 * Goal: the RADOS engine keeps the engine contract, and its fencing holds: a
 * writer at an older epoch cannot change an object a newer one wrote. Method:
 * the shared contract suite and direct checks against a real throwaway Ceph
 * (tests/_rados.ts), each engine on a namespace of its own in one pool.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { engineContract } from "../core/engine_contract.ts";
import { type Engine, LeaseLostError } from "../core/mod.ts";
import { testCeph } from "../tests/_rados.ts";
import { RadosEngine } from "./rados_engine.ts";

let pool: Promise<string> | null = null;
let namespaces = 0;

async function openEngine(
  namespace: string,
  fenceOf?: (uid: string) => number | null,
): Promise<RadosEngine> {
  const ceph = await testCeph();
  pool ??= ceph.freshPool("engine");
  return await RadosEngine.open({ conf: ceph.conf, pool: await pool, namespace, fenceOf });
}

engineContract("RadosEngine", {
  create: async () => await openEngine(`contract${++namespaces}`),
  reopen: async (engine) => {
    await engine.close();
    return await openEngine((engine as RadosEngine).namespace);
  },
  destroy: async (engine: Engine) => await engine.close(),
});

const objectX = `${"a".repeat(32)}.1.0`;

Deno.test("RadosEngine refuses a write from an older epoch once a newer one wrote the object", async () => {
  let oldEpoch: number | null = 3;
  const old = await openEngine("fence", () => oldEpoch);
  const fresh = await openEngine("fence", () => 4);
  try {
    await old.writeObject(objectX, 0, new Uint8Array(8).fill(1));
    await fresh.writeObject(objectX, 4, new Uint8Array(4).fill(2));
    await assert.rejects(old.writeObject(objectX, 0, new Uint8Array(8).fill(3)), LeaseLostError);
    const read = new Uint8Array(8);
    await fresh.readObject(objectX, { offset: 0, length: 8 }, read);
    assert.deepEqual([...read], [1, 1, 1, 1, 2, 2, 2, 2]);
    oldEpoch = null;
    await assert.rejects(
      old.writeObject(`${"b".repeat(32)}.1.0`, 0, new Uint8Array(1)),
      /no write lease/,
    );
  } finally {
    await old.close();
    await fresh.close();
  }
});

Deno.test("RadosEngine refuses a change from a volume instance of another epoch, and a deletion an older epoch's", async () => {
  const old = await openEngine("fence-instance", () => 3);
  const fresh = await openEngine("fence-instance", () => 5);
  const objectY = `${"c".repeat(32)}.1.0`;
  try {
    // An instance opened under epoch 2, still writing while this node holds epoch 3.
    await assert.rejects(
      old.writeObject(objectY, 0, new Uint8Array(8).fill(1), { epoch: 2 }),
      /lease epoch 2, and this node holds epoch 3/,
    );
    await assert.rejects(old.deleteObject(objectY, { epoch: 2 }), LeaseLostError);
    await old.writeObject(objectY, 0, new Uint8Array(8).fill(1), { epoch: 3 });
    // A newer holder wrote it: the older one's deletion is fenced, as its writes are.
    await fresh.writeObject(objectY, 4, new Uint8Array(4).fill(2), { epoch: 5 });
    await assert.rejects(old.deleteObject(objectY, { epoch: 3 }), LeaseLostError);
    const read = new Uint8Array(8);
    await fresh.readObject(objectY, { offset: 0, length: 8 }, read);
    assert.deepEqual([...read], [1, 1, 1, 1, 2, 2, 2, 2]);
    await fresh.deleteObject(objectY, { epoch: 5 });
    await fresh.deleteObject(objectY, { epoch: 5 }); // a missing object is no error
    const left: string[] = [];
    for await (const name of fresh.listObjects()) left.push(name);
    assert.ok(!left.includes(objectY), "deleted");
  } finally {
    await old.close();
    await fresh.close();
  }
});

Deno.test("RadosEngine collects only blocks stored before the cutoff; a second put or a refresh makes one young", async () => {
  const engine = await openEngine("gc");
  try {
    const data = new Uint8Array(4096).fill(7);
    const hash = createHash("sha256").update(data).digest("hex");
    assert.equal(await engine.putBlock(hash, data), true);
    const stored = Date.now();
    assert.equal(await engine.deleteBlockStoredBefore(hash, stored - 60_000), false);
    assert.equal(await engine.hasBlock(hash), true);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const cutoff = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await engine.putBlock(hash, data), false, "deduplicated");
    assert.equal(await engine.deleteBlockStoredBefore(hash, cutoff), false, "young again");
    await new Promise((resolve) => setTimeout(resolve, 20));
    const later = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await engine.refreshBlock(hash), true);
    assert.equal(await engine.deleteBlockStoredBefore(hash, later), false, "refreshed: young");
    assert.equal(await engine.deleteBlockStoredBefore(hash, Date.now() + 1000), true);
    assert.equal(await engine.hasBlock(hash), false);
    assert.equal(await engine.refreshBlock(hash), false, "a block gone is not made again");
    assert.equal(await engine.hasBlock(hash), false);
  } finally {
    await engine.close();
  }
});
