import assert from "node:assert/strict";
import {
  type Candidate,
  desiredVoters,
  finalConfig,
  isQuorum,
  jointConfig,
  type MetaConfig,
  voterTarget,
} from "./config.ts";

const alive = (id: string, zone: string | null = null): Candidate => ({
  id,
  zone,
  status: "alive",
  withinGrace: false,
});
const dead = (id: string, withinGrace: boolean): Candidate => ({
  id,
  zone: null,
  status: "dead",
  withinGrace,
});

Deno.test("voterTarget() is 1 below three members, 3 below five, then 5", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 9].map(voterTarget), [1, 1, 3, 3, 5, 5]);
});

Deno.test("desiredVoters() grows to 3 and 5, keeps voters, and prefers new zones", () => {
  assert.deepEqual(desiredVoters(["a"], [alive("a"), alive("b")]), ["a"]);
  assert.deepEqual(desiredVoters(["a"], ["a", "b", "c"].map((id) => alive(id))), ["a", "b", "c"]);
  const five = ["a", "b", "c", "d", "e", "f"].map((id) => alive(id));
  assert.deepEqual(desiredVoters(["c", "e", "f"], five), ["a", "b", "c", "e", "f"]);
  const zoned = [alive("a", "z1"), alive("b", "z1"), alive("c", "z2"), alive("d", "z3")];
  assert.deepEqual(desiredVoters(["a"], zoned), ["a", "c", "d"]);
});

Deno.test("desiredVoters() keeps a dead voter within grace, replaces it after", () => {
  const members = [alive("a"), alive("b"), dead("c", true), alive("d")];
  assert.deepEqual(desiredVoters(["a", "b", "c"], members), ["a", "b", "c"]);
  members[2] = dead("c", false);
  assert.deepEqual(desiredVoters(["a", "b", "c"], members), ["a", "b", "d"]);
  // No member to take its place: it keeps its vote rather than leave two voters.
  assert.deepEqual(desiredVoters(["a", "b", "c"], members.slice(0, 3)), ["a", "b", "c"]);
  // A voter that left loses its vote to an alive member at once, and keeps it when there
  // is none (a rolling restart does not shrink the voters to one).
  const left: Candidate = { id: "c", zone: null, status: "left", withinGrace: false };
  assert.deepEqual(desiredVoters(["a", "b", "c"], [alive("a"), alive("b"), left, alive("d")]), [
    "a",
    "b",
    "d",
  ]);
  assert.deepEqual(desiredVoters(["a", "b", "c"], [alive("a"), alive("b"), left]), ["a", "b", "c"]);
});

Deno.test("a joint configuration needs a majority of both groups; final drops the old", () => {
  const stable: MetaConfig = { epoch: 3, clusterId: "c", voters: ["a", "b", "c"], next: null };
  const joint = jointConfig(stable, ["c", "d", "e"]);
  assert.equal(joint.epoch, 4);
  assert.ok(isQuorum(joint, new Set(["a", "c", "d"])));
  assert.ok(!isQuorum(joint, new Set(["a", "b", "d"])), "only one of the new group");
  assert.ok(!isQuorum(joint, new Set(["a", "d", "e"])), "only one of the old group");
  assert.deepEqual(finalConfig(joint), { ...stable, epoch: 5, voters: ["c", "d", "e"] });
});
