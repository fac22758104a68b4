import assert from "node:assert/strict";
import { writeQuorum, writeQuorumOf } from "./_write_quorum.ts";
import { AssertionError } from "../../core/assert.ts";

Deno.test("writeQuorum() is a majority, lowered to min_size only by dead replicas", () => {
  // [replicas, dead, quorum]
  const table: [number, number, number][] = [
    [1, 0, 1],
    [1, 1, 1],
    [2, 0, 2],
    [2, 1, 1],
    [2, 2, 1],
    [3, 0, 2],
    [3, 1, 2],
    [3, 2, 2],
    [3, 3, 2],
    [4, 0, 3],
    [4, 1, 2],
    [4, 2, 2],
    [5, 0, 3],
    [5, 1, 3],
    [5, 2, 3],
    [5, 4, 3],
  ];
  for (const [replicas, dead, quorum] of table) {
    assert.equal(writeQuorum({ replicas, dead }), quorum, `R=${replicas} dead=${dead}`);
  }
});

Deno.test("writeQuorumOf() counts only the replicas declared dead", () => {
  const status = new Map([["a", "alive"], ["b", "suspect"], ["c", "dead"]]);
  const isDead = (id: string) => status.get(id) === "dead";
  assert.equal(writeQuorumOf(["a", "b"], isDead), 2, "a suspect replica is waited for");
  assert.equal(writeQuorumOf(["a", "c"], isDead), 1);
  assert.equal(writeQuorumOf(["a", "b", "c"], isDead), 2);
  assert.equal(writeQuorumOf([], isDead), 1, "no replica: nothing can acknowledge");
});

Deno.test("writeQuorum() refuses impossible counts", () => {
  assert.throws(() => writeQuorum({ replicas: 0, dead: 0 }), AssertionError);
  assert.throws(() => writeQuorum({ replicas: 2, dead: 3 }), AssertionError);
  assert.throws(() => writeQuorum({ replicas: 2, dead: -1 }), AssertionError);
});
