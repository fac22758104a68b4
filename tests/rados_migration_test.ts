/**
 * Goal: a QEMU live migration between two Atoll nodes on one Ceph pool keeps
 * every byte, and the lease follows the VM. Method: the migration test's
 * scenario (tests/_qemu_migration.ts: QEMU over QMP, -incoming on the second
 * node, back to a fresh QEMU on the first, nbdcopy against the model) with the
 * two nodes on the RADOS engine sharing one namespace of the test Ceph.
 */
import { migrateThereAndBack } from "./_qemu_migration.ts";
import { startRadosNodes } from "./_rados.ts";

Deno.test("QEMU live-migrates a VM between two nodes on one Ceph pool and back", async () => {
  const { nodes: [one, two], dir, stop } = await startRadosNodes(2);
  try {
    await migrateThereAndBack(one, two, dir);
  } finally {
    await stop();
  }
});
