/**
 * Goal: a member whose clock is 10 minutes off is refused with a reason an
 * operator sees (in /v1/cluster, /metrics and the log) and never joins; one whose
 * clock is 2 minutes off joins, and stays alive when its clock then jumps by 4
 * minutes while it runs (the old 30 s replay window declared such a member dead).
 * Method: real node processes on loopback; the skewed ones run under libfaketime
 * (LD_PRELOAD), their offset read from a file, re-read every second so a test can
 * make the clock jump; the monotonic clock is left alone, as an NTP step leaves it.
 */
import assert from "node:assert/strict";
import { eventually, members, startCluster, type TestProcessCluster } from "./_cluster.ts";
import { startNode, type TestNode } from "./_node.ts";

/** libfaketime's thread-safe library, where Debian's package `faketime` puts it. */
function libfaketime(): string {
  const candidates = [
    `/usr/lib/${Deno.build.arch}-linux-gnu/faketime/libfaketimeMT.so.1`,
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
  ];
  const found = candidates.find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
  assert.ok(found, `libfaketime not found (tests/install_tools.sh installs it): ${candidates}`);
  return found;
}

/** A member of `cluster` whose wall clock is `offset` (faketime syntax: "+10m") off ours. */
async function startSkewed(cluster: TestProcessCluster, name: string, offset: string) {
  const offsetFile = `${cluster.dir}/${name}-clock`;
  await Deno.writeTextFile(offsetFile, `${offset}\n`);
  const node = await startNode({
    args: cluster.args(["--join", cluster.nodes[0].gossip!]),
    env: {
      LD_PRELOAD: libfaketime(),
      FAKETIME_TIMESTAMP_FILE: offsetFile,
      FAKETIME_CACHE_DURATION: "1",
      FAKETIME_DONT_FAKE_MONOTONIC: "1",
    },
  });
  cluster.nodes.push(node);
  const setOffset = (offset: string) => Deno.writeTextFile(offsetFile, `${offset}\n`);
  return { node, setOffset };
}

/** How far `node`'s wall clock is ahead of ours, as its HTTP Date header says (±1 s). */
async function clockOffsetMs(node: TestNode): Promise<number> {
  const response = await node.fetch("/healthz");
  await response.body?.cancel();
  return Date.parse(response.headers.get("date")!) - Date.now();
}

async function clusterStatus(node: TestNode) {
  return await (await node.fetch("/v1/cluster")).json();
}

Deno.test("a member 10 minutes off is refused as clock-skew; one 2 minutes off joins, survives a jump", async () => {
  const cluster = await startCluster(1);
  const [seed] = cluster.nodes;
  try {
    const { node: far } = await startSkewed(cluster, "far", "+10m");
    const { node: near, setOffset } = await startSkewed(cluster, "near", "-2m");
    assert.ok(await clockOffsetMs(far) > 9 * 60_000, "libfaketime shifts deno's wall clock");

    await eventually("near and seed see each other alive", async () => {
      const views = await Promise.all([seed, near].map(members));
      return views.every((view) =>
        view.length === 2 && view.every((member) => member.state === "alive")
      );
    }, 15_000);
    await eventually("the seed shows far refused for clock skew", async () => {
      const refused = (await clusterStatus(seed)).refused;
      return refused.peers.some((peer: { address: string; reason: string }) =>
        peer.address === far.gossip && peer.reason === "clock-skew"
      );
    }, 10_000);
    const line = new RegExp(
      `\\[WARNING\\] atoll\\.cluster: refusing messages from ${far.gossip}: ` +
        "clock (599|600) s ahead of ours \\(limit 300 s\\)$",
    );
    assert.ok(seed.log.some((l) => line.test(l)), `seed log:\n${seed.log.join("\n")}`);
    assert.ok(
      far.log.some((l) => /refusing messages from .*: clock (599|600) s behind ours/.test(l)),
      `far says why too:\n${far.log.join("\n")}`,
    );
    const metrics = await (await seed.fetch("/metrics")).text();
    const refusedTotal = metrics.match(
      /^atoll_cluster_messages_refused_total\{reason="clock-skew"\} (\d+)$/m,
    );
    assert.ok(refusedTotal !== null && Number(refusedTotal[1]) > 0, metrics);

    // Near's clock jumps from 2 minutes behind to 2 minutes ahead, as it runs. (Forward:
    // the HTTP Date header it is read from is cached until the clock passes its next second.)
    await setOffset("+2m");
    await eventually("near's clock jumped", async () => await clockOffsetMs(near) > 90_000, 5000);
    // Several probe rounds and a suspicion timeout later, near is alive everywhere, far
    // was never let in, and near's messages were never refused, nor were the seed's.
    const watchedUntil = performance.now() + 6000;
    while (performance.now() < watchedUntil) {
      for (const node of [seed, near]) {
        const view = await members(node);
        assert.equal(view.length, 2, JSON.stringify(view));
        assert.ok(view.every((member) => member.state === "alive"), JSON.stringify(view));
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.deepEqual((await members(far)).map((member) => member.address), [far.gossip]);
    const seedRefused = (await clusterStatus(seed)).refused;
    assert.ok(!seedRefused.peers.some((peer: { address: string }) => peer.address === near.gossip));
    const nearRefused = (await clusterStatus(near)).refused.byReason;
    assert.deepEqual(
      [nearRefused.authentication, nearRefused.replay, nearRefused["clock-skew"]],
      [0, 0, 0],
    );
  } finally {
    await cluster.stop();
  }
});
