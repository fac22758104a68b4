/**
 * Goal: nodes form one cluster by gossip on real sockets, only with the cluster
 * key, notice a dead member and a leaving one. Method: five real node processes
 * on loopback with one key join through the first; a sixth with another key
 * and a seventh without a key try to join; one member is killed with SIGKILL
 * and another stopped with SIGTERM; every view is read from /v1/cluster.
 */
import assert from "node:assert/strict";
import { removeData, startNode, type TestNode } from "./_node.ts";
import { members } from "./_cluster.ts";

type Member = Awaited<ReturnType<typeof members>>[number];

/** Polls until `check` holds for every node in `nodes`; fails after `limitMs`. */
async function eventually(
  what: string,
  nodes: TestNode[],
  check: (view: Member[]) => boolean,
  limitMs = 30_000,
): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    const views = await Promise.all(nodes.map(members));
    if (views.every(check)) return performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`not every node saw ${what} within ${limitMs} ms`);
}

Deno.test("nodes with the key form a cluster, see a kill and a leave; others stay out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-cluster-" });
  await Deno.writeTextFile(`${dir}/key`, "a".repeat(64));
  await Deno.writeTextFile(`${dir}/other-key`, "b".repeat(64));
  const args = (key: string, join?: string) => [
    "--gossip",
    "127.0.0.1:0",
    "--cluster-key-file",
    `${dir}/${key}`,
    ...(join === undefined ? [] : ["--join", join]),
  ];
  const nodes: TestNode[] = [];
  try {
    nodes.push(await startNode({ args: args("key") }));
    const seed = nodes[0].gossip!;
    for (let i = 1; i < 5; i++) nodes.push(await startNode({ args: args("key", seed) }));
    const stranger = await startNode({ args: args("other-key", seed) });
    nodes.push(stranger);

    const cluster = nodes.slice(0, 5);
    await eventually(
      "5 alive members",
      cluster,
      (view) => view.length === 5 && view.every((member) => member.state === "alive"),
    );
    await new Promise((resolve) => setTimeout(resolve, 2000));
    for (const view of await Promise.all(cluster.map(members))) {
      assert.ok(!view.some((member) => member.address === stranger.gossip), "stranger got in");
    }
    assert.deepEqual((await members(stranger)).map((member) => member.address), [stranger.gossip]);

    // The cluster port refuses requests not sealed with the key.
    const refused = await fetch(`http://${seed}/rpc`, { method: "POST", body: "{}" });
    assert.equal(refused.status, 403);
    await refused.body?.cancel();

    const victim = cluster[3];
    await victim.kill9();
    const detectedMs = await eventually(
      "the killed member dead",
      cluster.filter((node) => node !== victim),
      (view) => view.find((member) => member.address === victim.gossip)?.state === "dead",
    );
    console.log(`kill -9 detected by all 4 survivors after ${Math.round(detectedMs)} ms`);

    const leaver = cluster[4];
    const status = await leaver.stop();
    assert.equal(status.code, 0);
    await eventually(
      "the stopped member left",
      cluster.slice(0, 3),
      (view) => view.find((member) => member.address === leaver.gossip)?.state === "left",
      10_000,
    );
  } finally {
    for (const node of nodes) {
      await node.stop();
      await removeData(node);
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a node refuses to run a cluster port without a key", async () => {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "serve", "--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0"],
    cwd: new URL("../", import.meta.url).pathname,
    stdout: "null",
    stderr: "piped",
  });
  const output = await command.output();
  assert.notEqual(output.code, 0);
  const stderr = new TextDecoder().decode(output.stderr).trim();
  assert.match(stderr, /^atoll: Cannot start cluster: --cluster-key-file is required/);
  assert.equal(stderr.split("\n").length, 1, "one clear line");
});
