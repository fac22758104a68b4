/**
 * Goal: a member that comes back as a metadata voter after it was replaced
 * brings nothing back from before. A value a failed change left on its
 * acceptor alone was never chosen; were it to count again, a read hearing it
 * would choose it long after the change failed (a record its writer took for
 * never written, whose data a collection may have swept since). It cannot:
 * the change's prepare reached a quorum, which meets the majority of old
 * voters whose keys the move lists (keys with any state, promises included),
 * so the move writes the key's register over it at a newer epoch.
 * Method: the production Reconfigurer, Proposer, Acceptor and NodeConfig of
 * four members in memory, links that can be cut or lose accepts.
 */
import assert from "node:assert/strict";
import { Acceptor } from "./acceptor.ts";
import type { AcceptorLink, AcceptorState, AcceptorStore } from "./caspaxos.ts";
import { NoQuorumError } from "./caspaxos.ts";
import type { MetaConfig } from "./config.ts";
import { NodeConfig } from "./node_config.ts";
import { Proposer } from "./proposer.ts";
import { Reconfigurer, type VoterCandidate } from "./reconfigure.ts";

const start: MetaConfig = { epoch: 1, clusterId: "c", voters: ["a0", "a1", "a2"], next: null };

/** One member's metadata side, reachable through a link that can be cut. */
class Member {
  readonly id: string;
  readonly states = new Map<string, AcceptorState>();
  readonly configs = new NodeConfig({ clusterId: "c", config: start }, {
    save: () => Promise.resolve(),
  });
  readonly acceptor: Acceptor;
  down = false;
  acceptsLost = false;

  constructor(id: string) {
    this.id = id;
    const store: AcceptorStore = {
      load: (key) => Promise.resolve(structuredClone(this.states.get(key) ?? null)),
      save: (key, state) => Promise.resolve(void this.states.set(key, structuredClone(state))),
    };
    this.acceptor = new Acceptor(store, this.configs);
  }

  get link(): AcceptorLink {
    const reach = <T>(call: () => Promise<T>) =>
      this.down ? Promise.reject(new Error(`${this.id} is down`)) : call();
    return {
      prepare: (key, ballot, config) => reach(() => this.acceptor.prepare(key, ballot, config)),
      accept: (key, ballot, register, config) =>
        reach(() =>
          this.acceptsLost
            ? Promise.reject(new Error("lost"))
            : this.acceptor.accept(key, ballot, register, config)
        ),
      peek: (key, config) => reach(() => this.acceptor.peek(key, config)),
    };
  }
}

Deno.test("a voter replaced and added again brings back no value a failed change left on it", async () => {
  const members = ["a0", "a1", "a2", "a3"].map((id) => new Member(id));
  const [a0, a1, a2, a3] = members;
  const byId = new Map(members.map((member) => [member.id, member]));
  const proposerOf = (member: Member) =>
    new Proposer({
      node: `${member.id}.1`,
      configs: member.configs,
      link: (id) => byId.get(id)?.link ?? null,
    });
  const status = new Map<string, "alive" | "dead">(members.map((m) => [m.id, "alive"]));
  const candidates = (): VoterCandidate[] =>
    members.map((member, i) => ({
      id: member.id,
      zone: `z${i}`,
      status: status.get(member.id)!,
      withinGrace: false,
      address: member.id,
    }));
  const peerOf = (address: string) => {
    const member = byId.get(address)!;
    if (member.down) throw new Error(`${address} is down`);
    return member;
  };
  const reconfigurer = new Reconfigurer({
    selfId: "a0",
    configs: a0.configs,
    proposer: proposerOf(a0),
    members: candidates,
    localKeys: () => [...a0.states.keys()],
    peers: {
      keys: (address) => Promise.resolve().then(() => [...peerOf(address).states.keys()]),
      install: (address, config) =>
        Promise.resolve().then(() => peerOf(address).configs.install(config)),
      configOf: (address) => Promise.resolve().then(() => peerOf(address).configs.current()),
    },
  });
  const bytes = new TextEncoder().encode("kept");
  const reader = proposerOf(a0);
  await reader.change("volume/kept", (current) => ({ version: current.version + 1, value: bytes }));

  // a2's upload writes its image record: the accepts reach a2's own acceptor only.
  a0.acceptsLost = true;
  a1.acceptsLost = true;
  await assert.rejects(
    proposerOf(a2).change("image/x", (current) => ({ version: current.version + 1, value: bytes })),
    NoQuorumError,
  );
  a0.acceptsLost = false;
  a1.acceptsLost = false;
  // a2 dies and is replaced by a3; later a3 dies and a2, back, replaces it.
  a2.down = true;
  status.set("a2", "dead");
  while (a0.configs.current()!.voters.includes("a2")) await reconfigurer.tick();
  assert.deepEqual(a0.configs.current()!.voters, ["a0", "a1", "a3"]);
  a3.down = true;
  status.set("a3", "dead");
  a2.down = false;
  status.set("a2", "alive");
  while (a0.configs.current()!.voters.includes("a3")) await reconfigurer.tick();
  assert.deepEqual(a0.configs.current()!.voters, ["a0", "a1", "a2"]);

  // Reads that hear a2: the failed change stays failed; what was chosen stays.
  a0.down = true;
  const fromA1 = proposerOf(a1);
  assert.equal((await fromA1.read("image/x")).value, null);
  assert.deepEqual((await fromA1.read("volume/kept")).value, bytes);
});
