/**
 * A writable instance needs the write lease this node holds to be the one its
 * record names (core/_volume_instances.ts): a lease lost while the instance
 * opened, or a record naming another lease, refuses it; a single node (no
 * access rules) is never refused.
 */
import assert from "node:assert/strict";
import { LeaseLostError } from "./errors.ts";
import type { VolumeAccess } from "./store.ts";
import { destroyTestStore, openTestStore, testBlockSize } from "./_test_store.ts";

Deno.test("writableVolume: refused unless the lease held is the one the record names", async () => {
  let held: ReturnType<VolumeAccess["heldLease"]> = null;
  const access: VolumeAccess = {
    acquire: () => Promise.resolve(),
    isCurrent: () => held !== null,
    heldLease: () => held,
  };
  const store = await openTestStore(undefined, access);
  try {
    await store.createVolume({ name: "v", size: 4 * testBlockSize });
    // Acquired, then lost before the instance was checked: no lease is no lease.
    await assert.rejects(store.writableVolume("v"), LeaseLostError);
    // A lease held, but the record names none (another holder's, or a released one).
    held = { holder: "n1", epoch: 3 };
    await assert.rejects(store.writableVolume("v"), /names the write lease of nobody at epoch 0/);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("writableVolume: a single node (no access rules) is never refused", async () => {
  const store = await openTestStore();
  try {
    await store.createVolume({ name: "v", size: 4 * testBlockSize });
    assert.equal((await store.writableVolume("v")).header.name, "v");
  } finally {
    await destroyTestStore(store);
  }
});
