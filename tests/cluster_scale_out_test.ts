/**
 * Goal: scale-out loses nothing. Joins in batches (two at once while a member
 * is dead, three at once on a healthy cluster) must leave every volume and
 * every snapshot readable from every member, through the dead grace, healing
 * and the dead member's return; a name that exists can never be created again.
 * Before metadata had its own voters, each of these lost records for good: a
 * key whose acceptors became mostly new, empty members read as absent.
 * Method: real `atoll serve` processes on loopback (R=3, short dead grace and
 * heal interval), records created through the HTTP API, `kill -9`, members
 * started at the same time, and every member asked for every record.
 */
import assert from "node:assert/strict";
import { startNode, type TestNode } from "./_node.ts";
import { eventually, members, startCluster, type TestProcessCluster } from "./_cluster.ts";
import { createSnapshot, createVolume } from "./_nbd.ts";

const volumes = Array.from({ length: 16 }, (_, i) => `vol${i}`);
const flags = ["--replicas", "3", "--dead-grace", "4", "--heal-interval", "1"];

/** Creates the volumes with snapshot s0 through `node`. */
async function createRecords(node: TestNode): Promise<void> {
  for (const name of volumes) {
    await createVolume(node, name, { size: 16 * 1024 * 1024 });
    await createSnapshot(node, name, "s0");
  }
}

/** What `node` says is missing of the records (empty when it has all of them). */
async function missing(node: TestNode, snapshots: string[]): Promise<string[]> {
  const lost: string[] = [];
  const response = await node.fetch("/v1/volumes");
  const listed = await response.json();
  // A member that joined a moment ago may not know the cluster's voters yet (503).
  if (response.status !== 200) return [`list: ${response.status} ${listed.error}`];
  const names = new Set((listed.volumes ?? listed).map((volume: { name: string }) => volume.name));
  for (const name of volumes) {
    if (!names.has(name)) lost.push(`${name} not listed`);
    const info = await node.fetch(`/v1/volumes/${name}`);
    await info.body?.cancel();
    if (info.status !== 200) lost.push(`${name}: ${info.status}`);
    const response = await node.fetch(`/v1/volumes/${name}/snapshots`);
    if (response.status !== 200) {
      await response.body?.cancel();
      lost.push(`${name} snapshots: ${response.status}`);
      continue;
    }
    const body = await response.json();
    const have = new Set((body.snapshots ?? body).map((snap: { name: string }) => snap.name));
    for (const snap of snapshots) if (!have.has(snap)) lost.push(`${name}@${snap}`);
  }
  return lost;
}

/** Every node in `nodes` has every record, soon (a lost record never comes back). */
async function everyoneHasAll(what: string, nodes: TestNode[], snapshots: string[]) {
  let last: string[] = [];
  try {
    await eventually(what, async () => {
      last = (await Promise.all(nodes.map((node) => missing(node, snapshots)))).flat();
      return last.length === 0;
    }, 30_000);
  } catch (error) {
    throw new Error(`${(error as Error).message}; missing: ${last.slice(0, 10).join(", ")}`);
  }
  // A name that exists cannot be created again, whichever node is asked.
  for (const node of nodes) {
    const again = await node.fetch("/v1/volumes", {
      method: "POST",
      body: JSON.stringify({ name: volumes[0], size: 4096 * 1024 }),
    });
    await again.body?.cancel();
    assert.equal(again.status, 409, `${what}: creating ${volumes[0]} again`);
  }
}

/** Starts `count` members at the same time, joining through node 1. */
function joinAtOnce(cluster: TestProcessCluster, count: number): Promise<TestNode[]> {
  return Promise.all(
    Array.from(
      { length: count },
      () => startNode({ args: cluster.args(["--join", cluster.nodes[0].gossip!, ...flags]) }),
    ),
  );
}

async function allAlive(nodes: TestNode[], count: number) {
  await eventually(`${count} alive members everywhere`, async () => {
    const views = await Promise.all(nodes.map(members));
    return views.every((view) =>
      view.filter((member) => member.state === "alive").length === count
    );
  });
}

Deno.test("two joins at once while a member is dead lose no record, through its return", async () => {
  const cluster = await startCluster(3, () => flags);
  const { nodes } = cluster;
  try {
    await createRecords(nodes[0]);
    const dead = nodes[2];
    await dead.kill9();
    for (const name of volumes) await createSnapshot(nodes[0], name, "s1");
    const joined = await joinAtOnce(cluster, 2);
    nodes.push(...joined);
    const live = [nodes[0], nodes[1], ...joined];
    await allAlive(live, 4);
    await everyoneHasAll("after two joins at once", live, ["s0", "s1"]);
    // Past the dead grace healing moves the dead member's share: still everything.
    await new Promise((resolve) => setTimeout(resolve, 6000));
    await everyoneHasAll("after the dead grace", live, ["s0", "s1"]);
    // The dead member returns on its data directory: it has everything too.
    const back = await startNode({
      data: dead.data,
      args: cluster.args(["--join", nodes[0].gossip!, ...flags]),
    });
    nodes[2] = back;
    await allAlive([...live, back], 5);
    await everyoneHasAll("after the dead member's return", [...live, back], ["s0", "s1"]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("three joins at once on a healthy cluster lose no record", async () => {
  const cluster = await startCluster(3, () => flags);
  const { nodes } = cluster;
  try {
    await createRecords(nodes[0]);
    const joined = await joinAtOnce(cluster, 3);
    nodes.push(...joined);
    await allAlive(nodes, 6);
    await everyoneHasAll("after three joins at once", nodes, ["s0"]);
    // Later changes land too (snapshots through the holder of the volumes' leases,
    // a volume created through a new member) and every member sees them.
    for (const name of volumes) await createSnapshot(nodes[0], name, "s1");
    await createVolume(joined[2], "late", { size: 4 * 1024 * 1024 });
    await everyoneHasAll("after later changes", nodes, ["s0", "s1"]);
    for (const node of nodes) {
      const late = await node.fetch("/v1/volumes/late");
      await late.body?.cancel();
      assert.equal(late.status, 200);
    }
  } finally {
    await cluster.stop();
  }
});
