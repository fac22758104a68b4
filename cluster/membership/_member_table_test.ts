/**
 * Goal: gossip forgets a member dead or gone past its retention unless told to
 * keep it (a cluster keeps those that may hold copies no one else has until an
 * operator declares them lost).
 */
import assert from "node:assert/strict";
import { MemberTable, type TableEffects } from "./_member_table.ts";

function table(now: { ms: number }): MemberTable {
  const effects: TableEffects = {
    now: () => now.ms,
    broadcast: () => {},
    changed: () => {},
    added: () => {},
    refute: () => {},
    suspicionChanged: () => {},
    relayConfirmation: () => false,
    suspicionEnded: () => {},
  };
  const members = new MemberTable({ id: "a", address: "a:1", zone: null, weight: 1 }, effects);
  for (const id of ["b", "c", "d"]) {
    members.apply(
      { kind: "alive", id, address: `${id}:1`, zone: null, weight: 1, incarnation: 1 },
      false,
    );
  }
  members.apply({ kind: "dead", id: "b", incarnation: 1, from: "a" }, false);
  members.apply({ kind: "left", id: "c", incarnation: 1 }, false);
  return members;
}

Deno.test("members gone past the retention are forgotten, but those kept", () => {
  const now = { ms: 0 };
  const members = table(now);
  now.ms = 1_000;
  assert.equal(members.forget(1_000), 0, "not past the retention yet");
  now.ms = 1_001;
  assert.equal(members.forget(1_000, (id) => id === "b"), 1);
  assert.deepEqual(members.peers.map((member) => member.id).sort(), ["b", "d"]);
  assert.equal(members.forget(1_000), 1);
  assert.deepEqual(members.peers.map((member) => member.id), ["d"]);
});
