/**
 * Goal: an operator can declare a member that is gone for good lost, so that
 * objects whose up-to-date copies only it may hold stop waiting for it
 * (cluster/lost_members.ts), and nothing else can: a live member, an unknown
 * one and a node running alone are refused with a reason; the declaration is
 * kept in the cluster's metadata, so every member finds it.
 * Method: three real `atoll serve` processes, one stopped gracefully (gossip
 * calls it left), the HTTP API and the `atoll cluster lost` command.
 */
import assert from "node:assert/strict";
import { removeData, startNode } from "./_node.ts";
import { eventually, members, startCluster } from "./_cluster.ts";
import { atollCli } from "./_cli.ts";

Deno.test("a member gone for good is declared lost once, and only then", async () => {
  const cluster = await startCluster(3);
  const [one, two, three] = cluster.nodes;
  try {
    // A member's id, found by its cluster address.
    const view = await members(one);
    const idOf = (node: typeof one) => view.find((member) => member.address === node.gossip)!.id;
    const [twoId, threeId] = [idOf(two), idOf(three)];

    // Alive: refused, saying why.
    const live = await one.fetch(`/v1/cluster/members/${encodeURIComponent(twoId)}/lost`, {
      method: "POST",
    });
    assert.equal(live.status, 409);
    assert.match((await live.json()).error, /is alive; stop it for good first/);
    // Unknown: not found.
    const unknown = await one.fetch("/v1/cluster/members/nobody/lost", { method: "POST" });
    assert.equal(unknown.status, 404);
    assert.match((await unknown.json()).error, /no such member/);

    await three.stop();
    await eventually("the others see the stopped member gone", async () => {
      const views = await Promise.all([one, two].map(members));
      return views.every((view) =>
        view.some((member) => member.id === threeId && member.state !== "alive")
      );
    });
    const run = await atollCli(["cluster", "lost", threeId], { ATOLL_NODE: one.url });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`member ${threeId} declared lost`));
    // Again: nothing changes, and it succeeds.
    const again = await two.fetch(`/v1/cluster/members/${encodeURIComponent(threeId)}/lost`, {
      method: "POST",
    });
    assert.equal(again.status, 200);
    assert.deepEqual(await again.json(), { id: threeId, lost: true });
    for (const node of [one, two]) {
      const status = await (await node.fetch("/v1/cluster")).json();
      assert.deepEqual(status.lost, [threeId], "each member that declared it shows it");
    }
    const shown = await atollCli(["cluster", "status"], { ATOLL_NODE: one.url });
    assert.match(shown.stdout, new RegExp(`declared lost:\\s+${threeId}`));
  } finally {
    await cluster.stop();
  }
});

Deno.test("a node running alone has no member to declare lost", async () => {
  const node = await startNode();
  try {
    const response = await node.fetch("/v1/cluster/members/n2/lost", { method: "POST" });
    assert.equal(response.status, 409);
    assert.match((await response.json()).error, /runs alone/);
  } finally {
    await node.kill9();
    await removeData(node);
  }
});
