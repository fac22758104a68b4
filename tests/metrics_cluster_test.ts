/**
 * Goal: a cluster member's /metrics passes `promtool check metrics` after real
 * cluster work, its figures move as that work implies, and the integrations
 * (integrations/grafana/atoll.json, integrations/prometheus/prometheus.yml)
 * query only series a member serves. Method: three real node processes with a
 * short GC age rule; an upload, a volume written by qemu-io through node 0,
 * then written through node 1 by libnbd (the write lease moves to node 1),
 * the deletion of an image whose blocks the automatic collection on node 0
 * removes; promtool on both members; every metric name in the dashboard's
 * queries found in node 1's scrape while the volume is open there.
 */
import assert from "node:assert/strict";
import { eventually, startCluster } from "./_cluster.ts";
import { patternBytes } from "./_files.ts";
import { createVolume, exec, holdNbdPython, MiB, qemuIo, uploadImage } from "./_nbd.ts";
import { promtoolCheckMetrics, scrape } from "./_metrics.ts";

const root = new URL("../", import.meta.url).pathname;
const dashboardPath = `${root}integrations/grafana/atoll.json`;
const scrapeConfigPath = `${root}integrations/prometheus/prometheus.yml`;

/** Metric names a PromQL expression reads. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:atoll|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1]);
}

/** Every query of the dashboard (panels, and variables' label_values). */
function dashboardQueries(): string[] {
  const dashboard = JSON.parse(Deno.readTextFileSync(dashboardPath));
  const exprs: string[] = [];
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) exprs.push(target.expr);
  }
  for (const variable of dashboard.templating.list) exprs.push(variable.definition);
  return exprs;
}

Deno.test("integrations: the scrape config passes promtool, the dashboard parses", async () => {
  const out = await new Deno.Command("promtool", { args: ["check", "config", scrapeConfigPath] })
    .output();
  const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, said);
  const queries = dashboardQueries();
  assert.ok(queries.length >= 30, `${queries.length} queries`);
  for (const expr of queries) assert.ok(metricNames(expr).length > 0, `no metric in ${expr}`);
});

/** libnbd through node 1: one 4 KiB write (the lease moves here), then hold the volume open. */
const writeAndHold = `
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"\\x05" * 4096, 0)
h.flush()
print(json.dumps("done"), flush=True)
sys.stdin.read()
`;

Deno.test("cluster member: /metrics passes promtool after a lease move and a collection", async () => {
  const cluster = await startCluster(3, () => ["--gc-min-age", "0.1", "--gc-settle", "0.1"]);
  const [node0, node1] = cluster.nodes;
  try {
    await uploadImage(node0, "base", patternBytes(4 * MiB, 1));
    await createVolume(node0, "vm1", { image: "base" });
    // 64 KiB goes through the replicas' journals, 1 MiB to their object files around the page cache.
    await qemuIo(node0.nbdUri("vm1"), ["write -P 7 0 64k", "write -P 8 1M 1M"]);
    const held = await holdNbdPython(writeAndHold, [node1.nbdUri("vm1")]);
    try {
      const m1 = await scrape(node1);
      await promtoolCheckMetrics(m1.text);
      assert.equal(m1.value("atoll_cluster_members", { state: "alive" }), 3);
      assert.ok(m1.value("atoll_lease_acquired_total") >= 1);
      assert.ok(m1.value("atoll_lease_last_move_seconds") > 0);
      assert.equal(
        m1.value("atoll_volume_bytes_total", { volume: "vm1", operation: "write" }),
        4096,
      );
      assert.equal(
        m1.value("atoll_volume_requests_total", { volume: "vm1", operation: "write" }),
        1,
      );
      const rounds = m1.matching("atoll_cluster_metadata_round_duration_seconds_count");
      assert.ok(rounds.reduce((a, b) => a + b, 0) > 0, "metadata rounds timed");
      for (const reason of ["cluster-id", "clock-skew"]) {
        assert.equal(m1.value("atoll_cluster_messages_refused_total", { reason }), 0);
      }
      // Every member is a voter of three: its acceptor holds the image's and vm1's keys.
      assert.ok(m1.value("atoll_cluster_acceptor_keys") >= 2, "acceptor keys");
      assert.ok(m1.value("atoll_cluster_acceptor_log_syncs_total") >= 2, "acceptor log syncs");
      assert.ok(m1.value("atoll_cluster_acceptor_log_bytes") > 0, "acceptor log bytes");
      assert.equal(m1.value("atoll_cluster_acceptor_log_failed"), 0);
      assert.equal(m1.value("atoll_cluster_acceptor_log_write_errors_total"), 0);
      // The holder flushed its write: at least that sync of its object journal.
      assert.ok(m1.value("atoll_cluster_journal_syncs_total") >= 1, "object journal syncs");
      assert.ok(m1.value("atoll_cluster_journal_syncs_ahead_total") >= 0);
      assert.equal(m1.value("atoll_cluster_journal_failed"), 0);
      assert.equal(m1.value("atoll_disk_direct_writes_available"), 1);
      const direct = (kind: string, result: string) =>
        m1.value("atoll_disk_direct_writes_total", { kind, result });
      assert.ok(direct("block", "direct") >= 1, "the image's block, stored here too");
      assert.ok(direct("object", "direct") >= 1, "node 0's 1 MiB write, a peer's change here");
      assert.equal(direct("block", "failed") + direct("object", "failed"), 0);
      // Written from the link's page-aligned body, without a staging copy.
      const unstaged = (kind: string) =>
        m1.value("atoll_disk_direct_writes_unstaged_total", { kind });
      assert.ok(unstaged("block") >= 1, "the image's block, from the link's body");
      assert.ok(unstaged("object") >= 1, "node 0's 1 MiB write, from the link's body");

      // Every metric the dashboard queries is served by a member with a volume open.
      const served = m1.names();
      const missing = dashboardQueries().flatMap(metricNames).filter((name) => !served.has(name));
      assert.deepEqual([...new Set(missing)], [], "dashboard metrics missing from /metrics");

      const m0 = await scrape(node0);
      await promtoolCheckMetrics(m0.text);
      assert.ok(m0.value("atoll_lease_released_total") >= 1, "node 0 gave the lease up");
      await eventually(
        "node 0 closed qemu-io's connection, and vm1's series",
        async () => (await scrape(node0)).value("atoll_volumes_open") === 0,
      );
      await eventually(
        "a healing pass",
        async () => (await scrape(node0)).value("atoll_heal_passes_total") >= 1,
      );

      // An image of its own block, deleted through node 0: its automatic collection counts.
      await uploadImage(node0, "lonely", patternBytes(4 * MiB, 3));
      assert.equal((await node0.fetch("/v1/images/lonely", { method: "DELETE" })).status, 204);
      await eventually("the automatic collection after the deletion", async () => {
        const now = await scrape(node0);
        return now.value("atoll_gc_deleted_blocks_total") >= 1;
      });
      const after = await scrape(node0);
      await promtoolCheckMetrics(after.text);
      assert.ok(after.value("atoll_gc_runs_total", { trigger: "automatic" }) >= 1);
      assert.equal(after.value("atoll_gc_runs_total", { trigger: "request" }), 0);
    } finally {
      await held.release();
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("a member cut off from its metadata voters answers /metrics, stays up, says why a volume cannot open", async () => {
  // Its capacity scan cannot list the catalogue: the scrape used to fail with that
  // error, and a later scan's failure, which no one awaited, ended the process.
  const cluster = await startCluster(3);
  const [node0, node1, node2] = cluster.nodes;
  try {
    await createVolume(node0, "vm1", { size: MiB });
    await node1.kill9();
    await node2.kill9();
    for (let i = 0; i < 3; i++) {
      const m = await scrape(node0);
      await promtoolCheckMetrics(m.text);
      assert.equal(m.value("atoll_capacity_scan_failures_total"), 1, "the one scan failed");
      assert.ok(m.value("atoll_capacity_scan_age_seconds") > 0);
    }
    // Opening vm1 takes its write lease, a change its voters must promise: refused, with the
    // reason in the NBD reply (qemu-img prints it), where the connection used to be dropped.
    const open = await exec("qemu-img", ["info", node0.nbdUri("vm1")]);
    assert.notEqual(open.code, 0);
    assert.match(open.stderr, /server reported: Cannot open export "vm1": .*voters/, open.stderr);
    const refused = (await scrape(node0)).value("atoll_nbd_handshake_failures_total", {
      reason: "open_failed",
    });
    assert.ok(refused >= 1, `handshakes refused: ${refused}`);
    const status = await Promise.race([
      node0.process.status.then(() => "exited"),
      new Promise((resolve) => setTimeout(() => resolve("running"), 200)),
    ]);
    assert.equal(status, "running");
  } finally {
    await cluster.stop();
  }
});
