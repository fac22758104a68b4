// Goal: placement keeps its promises: little data moves on a join or a leave and never
// between members that both stayed, load follows weight, replicas spread over zones, and
// the answer depends only on the inputs. Method: seeded names of the three shapes Atoll
// places (block hashes, object names, metadata keys), counted over whole clusters.
import assert from "node:assert/strict";
import { Placement, type PlacementMember, placeReplicas } from "./placement.ts";
import { generateNames } from "./_test_names.ts";

/** One pool of names for every test: making names costs more than placing them. */
const namePool = generateNames(100_000, 1);

/** `count` names from the pool, starting at a place that `offset` picks. */
function makeNames(count: number, offset: number): string[] {
  const start = (offset * 7919) % (namePool.length - count + 1);
  return namePool.slice(start, start + count);
}

function makeMembers(count: number, zones = 0, weightOf = (_: number) => 1): PlacementMember[] {
  return Array.from({ length: count }, (_, index) => ({
    id: `node-${index}`,
    weight: weightOf(index),
    zone: zones > 0 ? `zone-${index % zones}` : null,
  }));
}

/** Replicas stored per member id when every name is placed with `replicas` copies. */
function loadOf(placement: Placement, names: string[], replicas: number): Map<string, number> {
  const load = new Map(placement.ids.map((id) => [id, 0]));
  for (const name of names) {
    for (const id of placement.replicas(name, replicas)) load.set(id, load.get(id)! + 1);
  }
  return load;
}

/**
 * Places every name before and after a membership change and returns the fraction of
 * (name, replica) assignments that moved, asserting that replicas only arrived at
 * `changed` (a join) or only left it (a leave), and at most one per name.
 */
function movedFraction(
  before: Placement,
  after: Placement,
  names: string[],
  replicas: number,
  change: { joined?: string; left?: string },
): number {
  let moved = 0;
  for (const name of names) {
    const old = new Set(before.replicas(name, replicas));
    const now = after.replicas(name, replicas);
    const arrived = now.filter((id) => !old.has(id));
    const departed = [...old].filter((id) => !now.includes(id));
    assert.ok(arrived.length <= 1, `${name}: ${arrived.length} replicas moved`);
    assert.equal(arrived.length, departed.length);
    if (arrived.length === 0) continue;
    if (change.joined) assert.equal(arrived[0], change.joined, `${name} moved between stayers`);
    if (change.left) assert.equal(departed[0], change.left, `${name} moved between stayers`);
    moved++;
  }
  return moved / (names.length * replicas);
}

Deno.test("placeReplicas() returns [] for an empty member list", () => {
  assert.deepEqual(placeReplicas("volume/vm1", [], 3), []);
});

Deno.test("replicas() returns every member, best first, when replicas exceeds members", () => {
  const placement = new Placement(makeMembers(4, 2));
  const all = placement.replicas("volume/vm1", 10);
  assert.deepEqual([...all].sort(), [...placement.ids].sort());
  assert.deepEqual(all.slice(0, 3), placement.replicas("volume/vm1", 3));
});

Deno.test("replicas() rejects a bad name, replica count or member list", () => {
  const placement = new Placement(makeMembers(3));
  for (const count of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => placement.replicas("a", count), RangeError, `replicas ${count}`);
  }
  assert.throws(() => placement.replicas("a", "3" as unknown as number), TypeError);
  assert.throws(() => placement.replicas(7 as unknown as string, 1), TypeError);
  const one = (member: Partial<PlacementMember>) => [{ id: "a", weight: 1, zone: null, ...member }];
  for (const weight of [0, -1, NaN, Infinity, 2 ** -40, 2 ** 70]) {
    assert.throws(() => new Placement(one({ weight })), RangeError, `weight ${weight}`);
  }
  assert.throws(() => new Placement(one({ weight: "1" as unknown as number })), TypeError);
  assert.throws(() => new Placement(one({ id: "" })), TypeError);
  assert.throws(() => new Placement(one({ zone: "" })), TypeError);
  assert.throws(() => new Placement([...one({}), ...one({})]), TypeError, "a repeated id");
  assert.throws(() => new Placement({} as unknown as PlacementMember[]), TypeError);
});

Deno.test("replicas() depends only on the inputs, not on member order", () => {
  const members = makeMembers(12, 3, (index) => 1 + (index % 3));
  const shuffled = [...members].reverse().sort((a, b) => (a.id.length % 2) - (b.id.length % 2));
  const first = new Placement(members), second = new Placement(shuffled);
  for (const name of makeNames(2000, 5)) {
    const expected = first.replicas(name, 3);
    assert.deepEqual(first.replicas(name, 3), expected);
    assert.deepEqual(second.replicas(name, 3), expected);
    assert.deepEqual(placeReplicas(name, shuffled, 3), expected);
  }
});

Deno.test("replicas() keeps its placement format (a change would move a live cluster's data)", () => {
  const placement = new Placement([
    { id: "node-a", weight: 1, zone: "rack-1" },
    { id: "node-b", weight: 2, zone: "rack-1" },
    { id: "node-c", weight: 1, zone: "rack-2" },
    { id: "node-d", weight: 3, zone: null },
    { id: "node-e", weight: 1, zone: "rack-2" },
  ]);
  assert.deepEqual(placement.replicas("volume/vm1", 4), ["node-d", "node-b", "node-e", "node-c"]);
  const block = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  assert.deepEqual(placement.replicas(block, 4), ["node-b", "node-d", "node-c", "node-a"]);
});

Deno.test("replicas() for fewer replicas is a prefix of more replicas", () => {
  for (const zones of [0, 2, 3]) {
    const placement = new Placement(makeMembers(9, zones, (index) => 1 + (index % 4)));
    for (const name of makeNames(500, 6)) {
      const all = placement.replicas(name, 9);
      for (let count = 1; count < 9; count++) {
        assert.deepEqual(placement.replicas(name, count), all.slice(0, count));
      }
    }
  }
});

for (const replicas of [1, 3]) {
  for (const size of [10, 20]) {
    Deno.test(`a join or a leave moves ≤ 1.1/N and only its own replicas (R=${replicas}, N=${size})`, () => {
      // 5000 replicas per member: the moved share is then 1/N ± 1.4% (one σ).
      const names = makeNames(Math.ceil((5000 * size) / replicas), size * 10 + replicas);
      const members = makeMembers(size);
      const base = new Placement(members);
      const joined = new Placement(makeMembers(size + 1));
      const joinMoved = movedFraction(base, joined, names, replicas, { joined: `node-${size}` });
      assert.ok(joinMoved <= 1.1 / (size + 1), `join moved ${joinMoved}`);
      const leaver = members[3].id;
      const left = new Placement(members.filter((member) => member.id !== leaver));
      const leaveMoved = movedFraction(base, left, names, replicas, { left: leaver });
      assert.ok(leaveMoved <= 1.1 / size, `leave moved ${leaveMoved}`);
    });
  }
}

Deno.test("zones keep the movement property; a member joining a balanced zone moves ≤ 1.1/N", () => {
  const names = makeNames(12_000, 7);
  const members = makeMembers(12, 3);
  const base = new Placement(members);
  for (const replicas of [2, 3, 5]) {
    const joining = { id: "node-new", weight: 1, zone: "zone-0" };
    const joinMoved = movedFraction(base, new Placement([...members, joining]), names, replicas, {
      joined: "node-new",
    });
    assert.ok(joinMoved <= 1.1 / 13, `R=${replicas}: join moved ${joinMoved}`);
    const left = new Placement(members.filter((member) => member.id !== "node-4"));
    const leaveMoved = movedFraction(base, left, names, replicas, { left: "node-4" });
    assert.ok(leaveMoved <= 1.1 / 12, `R=${replicas}: leave moved ${leaveMoved}`);
    // A member that brings a new zone takes far more than 1/N (every name wants a replica
    // in it while zones < R), but still only to itself.
    const newZone = { id: "node-far", weight: 1, zone: "zone-far" };
    movedFraction(base, new Placement([...members, newZone]), names, replicas, {
      joined: "node-far",
    });
  }
});

Deno.test("equal weights: max/mean replicas per member ≤ 1.05 with 10 000 per member", () => {
  for (const [size, replicas, zones] of [[20, 3, 0], [10, 1, 0], [12, 3, 3]]) {
    const names = makeNames(Math.ceil((10_000 * size) / replicas), 8);
    const load = [...loadOf(new Placement(makeMembers(size, zones)), names, replicas).values()];
    const mean = (names.length * replicas) / size;
    const ratio = Math.max(...load) / mean;
    assert.ok(ratio <= 1.05, `N=${size} R=${replicas} zones=${zones}: max/mean ${ratio}`);
  }
});

Deno.test("weights 1, 2, 3, 4 get 10%, 20%, 30%, 40% of the data ± 3%", () => {
  const names = makeNames(100_000, 9);
  const placement = new Placement(makeMembers(4, 0, (index) => index + 1));
  const load = loadOf(placement, names, 1);
  for (let index = 0; index < 4; index++) {
    const share = load.get(`node-${index}`)! / names.length;
    const target = (index + 1) / 10;
    assert.ok(Math.abs(share / target - 1) <= 0.03, `weight ${index + 1}: share ${share}`);
  }
});

Deno.test("with R = 3, weights 1, 2, 3, 4 over 40 members get their share ± 3%", () => {
  const names = makeNames(40_000, 10);
  const placement = new Placement(makeMembers(40, 0, (index) => 1 + (index % 4)));
  const byWeight = [0, 0, 0, 0];
  for (const [id, count] of loadOf(placement, names, 3)) byWeight[Number(id.slice(5)) % 4] += count;
  for (let weight = 1; weight <= 4; weight++) {
    const share = byWeight[weight - 1] / (names.length * 3);
    const target = weight / 10;
    assert.ok(Math.abs(share / target - 1) <= 0.03, `weight ${weight}: share ${share}`);
  }
});

Deno.test("replicas span min(R, zones) zones on distinct members", () => {
  const cases: { members: PlacementMember[]; zonesOf: (replicas: number) => number }[] = [
    { members: makeMembers(9, 3), zonesOf: (replicas) => Math.min(replicas, 3) },
    {
      members: makeMembers(6, 2, (index) => 1 + index),
      zonesOf: (replicas) => Math.min(replicas, 2),
    },
    {
      // Two members without a zone are a zone each: 2 + 2 zones.
      members: makeMembers(6, 2).map((member, index) =>
        index < 2 ? { ...member, zone: null } : member
      ),
      zonesOf: (replicas) => Math.min(replicas, 4),
    },
  ];
  const names = makeNames(5000, 11);
  for (const { members, zonesOf } of cases) {
    const placement = new Placement(members);
    const zoneOf = new Map(members.map((member) => [member.id, member.zone ?? member.id]));
    for (const replicas of [1, 2, 3, 4]) {
      for (const name of names) {
        const chosen = placement.replicas(name, replicas);
        assert.equal(new Set(chosen).size, Math.min(replicas, members.length));
        const wanted = zonesOf(replicas);
        const leading = new Set(chosen.slice(0, wanted).map((id) => zoneOf.get(id)));
        assert.equal(leading.size, wanted, `${name} R=${replicas}: ${chosen}`);
      }
    }
  }
});
