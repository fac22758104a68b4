/**
 * Who holds a place: members dead past the grace period drop out only while
 * this node sees a majority live (seed 66705 of the data-path simulation at
 * fbbee75: a node whose gossip view had both others dead for longer than the
 * grace placed a volume's objects on itself alone, acknowledged a write and a
 * flush on its own copy, and a snapshot read elsewhere served the copy that
 * missed them).
 */
import assert from "node:assert/strict";
import { MemberView } from "./_member_view.ts";
import type { MemberState } from "./membership/mod.ts";
import { writeQuorumOf } from "./data/_write_quorum.ts";
import { placementDigest } from "./data/mod.ts";

const graceMs = 6_000;

function member(id: string, status: MemberState["status"], since = 0): MemberState {
  return { id, address: `${id}:7946`, zone: null, weight: 1, incarnation: 1, status, since };
}

function viewOf(members: MemberState[], now: number): MemberView {
  return new MemberView({
    members: () => members,
    now: () => now,
    deadGraceMs: graceMs,
    replicaCount: 3,
  });
}

Deno.test("a node that sees a majority live drops members dead past the grace", () => {
  const members = [member("n0", "alive"), member("n1", "alive"), member("n2", "dead", 0)];
  assert.deepEqual(viewOf(members, graceMs - 1).placementMembers().map(({ id }) => id), [
    "n0",
    "n1",
    "n2",
  ]);
  const view = viewOf(members, graceMs + 1);
  assert.deepEqual(view.placementMembers().map(({ id }) => id), ["n0", "n1"]);
  assert.deepEqual(view.replicaPeers("object").map(({ id }) => id).sort(), ["n0", "n1"]);
});

Deno.test("a node that sees no majority live keeps every dead member in its place", () => {
  // n2's view: both others dead for longer than the grace.
  const members = [member("n0", "dead", 0), member("n1", "dead", 0), member("n2", "alive")];
  const view = viewOf(members, 10 * graceMs);
  assert.equal(view.seesMajority(), false);
  assert.deepEqual(view.placementMembers().map(({ id }) => id), ["n0", "n1", "n2"]);
  const replicas = view.replicaPeers("object").map(({ id }) => id);
  assert.deepEqual([...replicas].sort(), ["n0", "n1", "n2"]);
  // So its writes need a majority of the three, never its own copy alone.
  assert.equal(writeQuorumOf(replicas, (id) => view.countsDead(id)), 2);
});

Deno.test("a member that left keeps its place for the grace, and writes go on without it", () => {
  // It took its copies with it: dropped at once, a member new to an object (holding
  // a stale copy left over from an earlier placement) counted as its replica while
  // the other replica, holding the newest, did not answer (seed 9106 with joins and
  // leaves, read at n0 after n2 left and n4 crashed).
  const members = [
    member("n0", "alive"),
    member("n1", "alive"),
    member("n2", "left", 0),
    member("n3", "alive"),
  ];
  const young = viewOf(members, graceMs - 1);
  assert.deepEqual(young.placementMembers().map(({ id }) => id), ["n0", "n1", "n2", "n3"]);
  assert.ok(young.countsDead("n2"));
  // Objects it held stay placed on it; a write to them needs the others only.
  const held = Array.from({ length: 20 }, (_, i) => `o${i}`).find((name) =>
    young.replicaPeers(name).some(({ id }) => id === "n2")
  )!;
  const replicas = young.replicaPeers(held).map(({ id }) => id);
  assert.equal(writeQuorumOf(replicas, (id) => young.countsDead(id)), 2);
  const old = viewOf(members, graceMs + 1);
  assert.deepEqual(old.placementMembers().map(({ id }) => id), ["n0", "n1", "n3"]);
});

Deno.test("members that left drop out after the grace whatever the view", () => {
  const members = [
    member("n0", "dead", 0),
    member("n1", "left", 0),
    member("n2", "alive"),
    member("n3", "dead", 0),
  ];
  const view = viewOf(members, 10 * graceMs);
  assert.deepEqual(view.placementMembers().map(({ id }) => id), ["n0", "n2", "n3"]);
});

Deno.test("replicas placed with the members gone count those gone, once each, however long gone", () => {
  // data/_copy_checks.ts checkGone: the members a placement dropped past the grace may
  // hold an object's only up-to-date copies until they are back or declared lost
  // (lost_members.ts goneReplicaCount, cluster_engine_test.ts).
  const members = [
    member("n0", "alive"),
    member("n1", "alive"),
    member("n2", "left", 0),
    member("n3", "dead", 0),
  ];
  const view = viewOf(members, 2 * graceMs);
  assert.deepEqual(view.placementMembers().map(({ id }) => id), ["n0", "n1"]);
  const counts = Array.from({ length: 40 }, (_, i) => view.goneReplicas(`object-${i}`).length);
  // Three replicas over four members: one or two of them are gone, for every object.
  assert.ok(counts.every((count) => count === 1 || count === 2), `${counts}`);
  assert.ok(counts.includes(2));
  // Gone for long, and not declared lost: still counted.
  assert.deepEqual(
    Array.from(
      { length: 40 },
      (_, i) => viewOf(members, 1000 * graceMs).goneReplicas(`object-${i}`).length,
    ),
    counts,
  );
  // Gossip hands out fresh member records on each call, and members gone within the grace
  // are placed already: each member is placed once.
  const fresh = new MemberView({
    members: () => members.map((state) => ({ ...state })),
    now: () => graceMs / 2,
    deadGraceMs: graceMs,
    replicaCount: 3,
  });
  const within = Array.from({ length: 40 }, (_, i) => fresh.goneReplicas(`object-${i}`).length);
  assert.ok(within.every((count) => count === 1 || count === 2), `${within}`);
});

Deno.test("a view places each name once, and its placement's digest is that of the replicas", () => {
  const members = [member("n0", "alive"), member("n1", "alive"), member("n2", "alive")];
  members.push(member("n3", "alive"), member("n4", "dead", 0));
  let now = 0;
  const view = new MemberView({
    members: () => members,
    now: () => now,
    deadGraceMs: graceMs,
    replicaCount: 3,
  });
  const names = Array.from({ length: 50 }, (_, i) => `${"ab".repeat(16)}.1.${i}`);
  const placed = names.map((name) => view.replicaPeers(name).map(({ id }) => id));
  for (const [i, name] of names.entries()) {
    assert.deepEqual(view.replicaPeers(name).map(({ id }) => id), placed[i], "same view");
    assert.equal(view.placementDigestOf(name), placementDigest(placed[i]));
  }
  // Past the grace the dead member drops out: a new view places every name anew.
  now = graceMs + 1_001;
  for (const name of names) {
    const ids = view.replicaPeers(name).map(({ id }) => id);
    assert.ok(!ids.includes("n4"));
    assert.equal(view.placementDigestOf(name), placementDigest(ids));
  }
  assert.ok(placed.some((ids) => ids.includes("n4")), "n4 held a place while young");
});

Deno.test("placementDigest is FNV-1a of the sorted ids, a character outside the BMP by its first unit", () => {
  // What replicas compare on every change: its value must never change between versions.
  const reference = (ids: string[]) => {
    let hash = 0x811c9dc5;
    for (const char of [...ids].sort().join(",")) {
      hash ^= char.charCodeAt(0);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return hash;
  };
  const samples = [[], ["n1"], ["n3", "n1"], ["node-😀", "n2"], ["\ud800", "a\udc00b", "é"]];
  for (const ids of samples) assert.equal(placementDigest(ids), reference(ids), ids.join());
  assert.equal(placementDigest(["n1", "n3"]), placementDigest(["n3", "n1"]));
});

Deno.test("members gone for ten grace periods or longer are long gone, not asked lately", () => {
  const members = [
    member("n0", "alive"),
    member("n1", "dead", 0),
    member("n2", "left", 5 * graceMs),
    member("n3", "suspect", 0),
  ];
  const view = viewOf(members, 10 * graceMs);
  assert.deepEqual(view.longGone().map(({ id }) => id), ["n1"]);
  assert.deepEqual(view.recentlyGone().map(({ id }) => id), ["n2"]);
  assert.deepEqual(view.recentlyGone(Infinity).map(({ id }) => id), ["n1", "n2"]);
});
