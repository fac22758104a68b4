/**
 * Goal: /metrics passes `promtool check metrics` after real work, and its
 * figures move by exactly what the work implies. Method: a real node; two
 * uploads of the same image (the second stores nothing new), a volume cloned
 * from it, NBD I/O through libnbd (exact requests: two writes that copy up,
 * a read, a trim, a zero, a flush) held open while qemu-io writes once more,
 * an HTTP 404, a handshake for a missing export, and the deletion of an image
 * whose blocks the automatic collection then removes (counted against the
 * block files on disk before and after). The volume's series must vanish when
 * its last NBD connection closes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { patternBytes } from "./_files.ts";
import { eventually } from "./_cluster.ts";
import { createVolume, exec, holdNbdPython, MiB, qemuIo, uploadImage, withNode } from "./_nbd.ts";
import { promtoolCheckMetrics, scrape } from "./_metrics.ts";

/** Block files under a node's data directory (what the collection deletes). */
export async function blockFiles(data: string): Promise<number> {
  let count = 0;
  for await (const prefix of Deno.readDir(join(data, "blocks"))) {
    for await (const _ of Deno.readDir(join(data, "blocks", prefix.name))) count++;
  }
  return count;
}

/** libnbd: the exact requests the test counts, then holds the connection open. */
const exactIo = `
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"\\x01" * 4096, 0)
h.pwrite(b"\\x02" * 8192, 4 * 1024 * 1024 + 4096)
h.pread(65536, 0)
h.trim(4096, 8 * 1024 * 1024)
h.zero(65536, 4 * 1024 * 1024 + 65536)
h.flush()
print(json.dumps("done"), flush=True)
sys.stdin.read()
`;

Deno.test("single node: /metrics passes promtool and counts uploads, NBD I/O and collections", async () => {
  await withNode(async ({ node }) => {
    const image = new Uint8Array(12 * MiB); // two distinct blocks, then a zero block
    image.set(patternBytes(4 * MiB, 1), 0);
    image.set(patternBytes(4 * MiB, 2), 4 * MiB);
    await uploadImage(node, "base", image);
    await uploadImage(node, "base-again", image);
    await createVolume(node, "vm1", { image: "base" });

    const held = await holdNbdPython(exactIo, [node.nbdUri("vm1")]);
    let released = false;
    try {
      await qemuIo(node.nbdUri("vm1"), ["write -P 9 0 64k"]);
      assert.equal((await node.fetch("/v1/no-such-thing")).status, 404);
      assert.equal((await node.fetch("/v1/volumes/vm1")).status, 200);
      const missing = await exec("nbdinfo", [node.nbdUri("no-such-volume")]);
      assert.notEqual(missing.code, 0);
      // The node closes nbdinfo's connection once the client has gone: wait for that.
      await eventually(
        "only the held NBD connection open",
        async () => (await scrape(node)).value("atoll_nbd_connections_open") === 1,
      );

      const m = await scrape(node);
      await promtoolCheckMetrics(m.text);
      // Uploads: 24 MiB received, 8 MiB stored (the zero block and the second copy need none).
      assert.equal(m.value("atoll_upload_bytes_total"), 24 * MiB);
      assert.equal(m.value("atoll_upload_new_bytes_total"), 8 * MiB);
      assert.equal(m.value("atoll_upload_dedup_ratio"), 1 - 8 / 24);
      // The two new blocks went around the page cache; the node's own volume writes never do.
      assert.equal(m.value("atoll_disk_direct_writes_available"), 1);
      assert.equal(
        m.value("atoll_disk_direct_writes_total", { kind: "block", result: "direct" }),
        2,
      );
      assert.equal(
        m.value("atoll_disk_direct_writes_total", { kind: "object", result: "direct" }),
        0,
      );
      // Both from the upload's page-aligned block buffers, without a staging copy.
      assert.equal(m.value("atoll_disk_direct_writes_unstaged_total", { kind: "block" }), 2);
      // Per volume: libnbd's exact requests plus qemu-io's one write (and its flush at close).
      const volume = (operation: string) => ({ volume: "vm1", operation });
      assert.equal(m.value("atoll_volumes_open"), 1);
      assert.equal(m.value("atoll_volume_requests_total", volume("write")), 3);
      assert.equal(m.value("atoll_volume_bytes_total", volume("write")), 4096 + 8192 + 65536);
      assert.equal(m.value("atoll_volume_requests_total", volume("read")), 1);
      assert.equal(m.value("atoll_volume_bytes_total", volume("read")), 65536);
      assert.equal(m.value("atoll_volume_requests_total", volume("trim")), 1);
      assert.equal(m.value("atoll_volume_bytes_total", volume("trim")), 4096);
      assert.equal(m.value("atoll_volume_requests_total", volume("zero")), 1);
      assert.equal(m.value("atoll_volume_bytes_total", volume("zero")), 65536);
      assert.ok(m.value("atoll_volume_requests_total", volume("flush")) >= 1);
      // The first writes to blocks 0 and 1 of the image copied them up; later ones wrote in place.
      assert.equal(m.value("atoll_volume_copy_ups_total", { volume: "vm1" }), 2);
      assert.equal(m.value("atoll_volume_in_flight_requests", { volume: "vm1" }), 0);
      const latency = "atoll_volume_request_duration_seconds";
      assert.equal(m.value(`${latency}_count`, volume("write")), 3);
      assert.equal(m.value(`${latency}_bucket`, { ...volume("write"), le: "+Inf" }), 3);
      assert.ok(m.value(`${latency}_sum`, volume("write")) > 0);
      // NBD node-wide: three sessions served, the missing export counted, no error replies.
      assert.ok(m.value("atoll_nbd_connections_served_total") >= 3);
      assert.equal(m.value("atoll_nbd_connections_open"), 1);
      assert.ok(m.value("atoll_nbd_handshake_failures_total", { reason: "unknown_export" }) >= 1);
      assert.equal(m.value("atoll_nbd_errors_total", { error: "EIO" }), 0);
      // HTTP by route template, never the raw path.
      const http = (method: string, route: string, status: string) => ({ method, route, status });
      assert.equal(m.value("atoll_http_requests_total", http("PUT", "/v1/images/:name", "201")), 2);
      assert.equal(m.value("atoll_http_requests_total", http("POST", "/v1/volumes", "201")), 1);
      assert.equal(
        m.value("atoll_http_requests_total", http("GET", "/v1/volumes/:name", "200")),
        1,
      );
      assert.equal(m.value("atoll_http_requests_total", http("GET", "unmatched", "404")), 1);
      assert.doesNotMatch(m.text, /no-such-thing/);
      // Capacity and the process.
      assert.equal(m.value("atoll_images"), 2);
      assert.equal(m.value("atoll_volumes"), 1);
      assert.ok(m.value("atoll_stored_blocks") >= 2);
      assert.ok(m.value("atoll_stored_bytes", { kind: "block" }) >= 8 * MiB);
      assert.ok(m.value("atoll_data_disk_size_bytes") > m.value("atoll_data_disk_free_bytes"));
      assert.ok(m.value("process_resident_memory_bytes") > 0);
      assert.ok(m.value("process_open_fds") > 0);
      assert.ok(m.value("nodejs_eventloop_lag_p99_seconds") >= 0);

      // An image of its own block, deleted: the automatic collection deletes what it stored.
      await uploadImage(node, "lonely", patternBytes(4 * MiB, 3));
      const before = await blockFiles(node.data);
      assert.equal((await node.fetch("/v1/images/lonely", { method: "DELETE" })).status, 204);
      await eventually("the automatic collection after the deletion", async () => {
        return (await scrape(node)).value("atoll_gc_deleted_blocks_total") > 0;
      });
      const deleted = before - await blockFiles(node.data);
      assert.ok(deleted >= 1, `the collection deleted ${deleted} block files`);
      const after = await scrape(node);
      assert.equal(after.value("atoll_gc_deleted_blocks_total"), deleted);
      assert.ok(after.value("atoll_gc_runs_total", { trigger: "automatic" }) >= 1);
      assert.equal(after.value("atoll_gc_runs_total", { trigger: "request" }), 0);

      await held.release();
      released = true;
      const closed = await scrape(node);
      await promtoolCheckMetrics(closed.text);
      assert.equal(closed.value("atoll_volumes_open"), 0);
      assert.deepEqual(closed.matching("atoll_volume_requests_total", { volume: "vm1" }), []);
    } finally {
      if (!released) await held.release();
    }
  });
});
