/**
 * Goal: a change of metadata voters never starts toward members that do not
 * answer. Gossip takes seconds to see a member dead; a joint configuration
 * whose next voters are mostly dead can never finish (it needs a majority of
 * them), and every metadata change and read would wait for it for good.
 * Method: the production Reconfigurer, Proposer and Acceptor in memory: node
 * a0 is the only voter; a3 and a4 look alive to gossip but answer nothing.
 * (Found by the metadata simulation, seed 120358 on the code of dba2e04: two
 * members killed for good were chosen as new voters before gossip saw them
 * dead.)
 */
import assert from "node:assert/strict";
import { Acceptor } from "./acceptor.ts";
import type { AcceptorLink, AcceptorState, AcceptorStore, Register } from "./caspaxos.ts";
import type { MetaConfig } from "./config.ts";
import { NodeConfig } from "./node_config.ts";
import { Proposer } from "./proposer.ts";
import { Reconfigurer, type VoterCandidate } from "./reconfigure.ts";

Deno.test("a change of voters never starts toward members that do not answer", async () => {
  const config: MetaConfig = { epoch: 1, clusterId: "c", voters: ["a0"], next: null };
  const configs = new NodeConfig({ clusterId: "c", config }, { save: () => Promise.resolve() });
  const states = new Map<string, AcceptorState>();
  const store: AcceptorStore = {
    load: (key) => Promise.resolve(states.get(key) ?? null),
    save: (key, state) => Promise.resolve(void states.set(key, structuredClone(state))),
  };
  const acceptor = new Acceptor(store, configs);
  const local: AcceptorLink = {
    prepare: (key, ballot, config) => acceptor.prepare(key, ballot, config),
    accept: (key, ballot, register, config) => acceptor.accept(key, ballot, register, config),
    peek: (key, config) => acceptor.peek(key, config),
  };
  const silent: AcceptorLink = {
    prepare: () => Promise.reject(new Error("timed out")),
    accept: () => Promise.reject(new Error("timed out")),
    peek: () => Promise.reject(new Error("timed out")),
  };
  const proposer = new Proposer({
    node: "a0.1",
    configs,
    link: (id) => id === "a0" ? local : silent,
  });
  const members: VoterCandidate[] = [
    { id: "a0", zone: "z1", status: "alive", withinGrace: false, address: "a0" },
    { id: "a3", zone: "z2", status: "alive", withinGrace: false, address: "a3" },
    { id: "a4", zone: "z3", status: "alive", withinGrace: false, address: "a4" },
  ];
  const reconfigurer = new Reconfigurer({
    selfId: "a0",
    configs,
    proposer,
    members: () => members,
    localKeys: () => [...states.keys()],
    peers: {
      keys: (address) => address === "a0" ? Promise.resolve([...states.keys()]) : timedOut(),
      install: (address, config) => address === "a0" ? configs.install(config) : timedOut(),
      configOf: (address) => address === "a0" ? Promise.resolve(configs.current()) : timedOut(),
    },
  });
  const bytes = new TextEncoder().encode("kept");
  await proposer.change("volume/v", (current) => ({ version: current.version + 1, value: bytes }));

  await assert.rejects(reconfigurer.tick(), /a3, a4 did not answer/);
  assert.deepEqual(configs.current(), config, "no joint configuration toward silent members");
  // The metadata still answers and changes with the voter it has.
  const read: Register = await proposer.read("volume/v");
  assert.deepEqual(read.value, bytes);
  await proposer.change("volume/v", (current) => ({ version: current.version + 1, value: bytes }));
});

function timedOut<T>(): Promise<T> {
  return Promise.reject(new Error("timed out"));
}
