/**
 * Goal: a real QEMU live migration with the volume on Atoll: the source VM on
 * node 1, the destination (`-incoming`) on node 2, both attached over NBD at
 * once; what the source wrote is what the destination reads; the destination's
 * writes move the lease; migrating back to a fresh QEMU on node 1 works the
 * same way; the volume ends equal to the model.
 * Method: two `qemu-system-x86_64 -accel tcg` processes per hop driven over QMP
 * (qemu-io through `human-monitor-command` on a virtio-blk drive), migration
 * over loopback TCP; the final check with nbdcopy as a third client.
 */
import { startCluster } from "./_cluster.ts";
import { migrateThereAndBack } from "./_qemu_migration.ts";

Deno.test("QEMU live-migrates a VM from node 1 to node 2 and back, with the volume on Atoll", async () => {
  const cluster = await startCluster(2);
  const [one, two] = cluster.nodes;
  try {
    await migrateThereAndBack(one, two, cluster.dir);
  } finally {
    await cluster.stop();
  }
});
