/**
 * Goal: a collection learns the pins of every member that holds a place, dead
 * ones within the grace period included (one may still run, cut off, with an
 * upload it commits once back), and stops when one does not answer; it asks
 * again before its second mark (a member heard of since may have pins). Members
 * gone past the grace are asked too: a dead one's silence stops the collection
 * (it may only be paused, its upload going on), a left one's does not.
 * Method: clusterGcPolicy over an engine and an RPC caller stubbed as a list
 * of members and their answers.
 */
import assert from "node:assert/strict";
import { ConflictError } from "../../core/mod.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import type { MemberState } from "../membership/mod.ts";
import type { RpcCaller } from "../transport/mod.ts";
import { clusterGcPolicy } from "./cluster_gc.ts";

function member(id: string, status: MemberState["status"]): MemberState {
  return { id, address: id, zone: null, weight: 1, incarnation: 0, status, since: 0 };
}

/**
 * A policy for node `a` whose placement holds `members` (and whose view called
 * `gone` dead or gone lately); `pins` answers by address.
 */
function policyOver(
  members: MemberState[],
  pins: Record<string, string[]>,
  gone: MemberState[] = [],
) {
  const engine = {
    selfId: "a",
    placementMembers: () => members,
    goneMembers: () => gone,
  } as unknown as ClusterEngine;
  const rpc: RpcCaller = {
    call: (address) =>
      pins[address] === undefined
        ? Promise.reject(new Error(`${address} does not answer`))
        : Promise.resolve({ header: { hashes: pins[address] } }),
  };
  return clusterGcPolicy({ engine, rpc, minAgeMs: 0, settleMs: 0 });
}

Deno.test("pinned() asks a member dead within the grace period, and keeps its pins", async () => {
  const policy = policyOver(
    [member("a", "alive"), member("b", "alive"), member("c", "dead")],
    { b: ["1".repeat(64)], c: ["2".repeat(64)] },
  );
  assert.deepEqual([...await policy.pinned()].sort(), ["1".repeat(64), "2".repeat(64)]);
});

Deno.test("pinned() stops the collection when a member dead within the grace does not answer", async () => {
  const policy = policyOver(
    [member("a", "alive"), member("b", "alive"), member("c", "dead")],
    { b: [] },
  );
  await assert.rejects(policy.pinned(), ConflictError);
});

Deno.test("settle() asks the members again: one heard of since the pins were taken adds its pins", async () => {
  // Seed 770362 (joins, leaves, replacements): a member that had just joined, unknown to the
  // collector when it took the pins, uploaded an image whose record committed after the first
  // mark; its blocks, stored before the pins, were swept.
  const members = [member("a", "alive"), member("b", "alive")];
  const policy = policyOver(members, { b: ["h1"], c: ["h2"] });
  const pins = await policy.pinned();
  assert.deepEqual([...pins], ["h1"]);
  members.push(member("c", "alive")); // gossip tells of c during the pause
  await policy.settle();
  assert.deepEqual([...pins].sort(), ["h1", "h2"], "the set the sweep checks holds c's pins");
});

Deno.test("pinned() asks members gone past the grace too, not waiting on one that left", async () => {
  // Seed 1429634 (joins, leaves): a collector that saw a lease holder dead past the grace
  // did not ask it, and swept a map page its next flush named.
  const policy = policyOver(
    [member("a", "alive"), member("b", "alive")],
    { b: ["1".repeat(64)], c: ["3".repeat(64)] },
    [member("c", "dead"), member("d", "left")],
  );
  assert.deepEqual([...await policy.pinned()].sort(), ["1".repeat(64), "3".repeat(64)]);
});

Deno.test("pinned() stops the collection when a member dead past the grace does not answer", async () => {
  // Seed 10560212 (joins, leaves): a member paused past the grace did not answer; the
  // collection went on and swept a block its upload had deduplicated long before, and the
  // upload, resumed, committed an image naming it.
  const policy = policyOver(
    [member("a", "alive"), member("b", "alive")],
    { b: ["1".repeat(64)] },
    [member("c", "dead")],
  );
  await assert.rejects(policy.pinned(), /member c \(c\), dead to gossip, did not say/);
});
