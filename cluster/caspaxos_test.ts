import assert from "node:assert/strict";
import {
  Acceptor,
  type AcceptorLink,
  type AcceptorState,
  type AcceptorStore,
  compareBallots,
  NoQuorumError,
  Proposer,
  type Register,
} from "./caspaxos.ts";

/** An acceptor in memory, reachable through a link that can be cut or slowed. */
function acceptorFixture() {
  const states = new Map<string, AcceptorState>();
  const store: AcceptorStore = {
    load: (key) => Promise.resolve(states.get(key) ?? null),
    save: (key, state) => Promise.resolve(void states.set(key, structuredClone(state))),
  };
  let acceptor = new Acceptor(store);
  const fault = { down: false, delayMs: 0 };
  const reach = async <T>(call: () => Promise<T>): Promise<T> => {
    if (fault.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
    if (fault.down) throw new Error("unreachable");
    return await call();
  };
  const link: AcceptorLink = {
    prepare: (key, ballot) => reach(() => acceptor.prepare(key, ballot)),
    accept: (key, ballot, register) => reach(() => acceptor.accept(key, ballot, register)),
  };
  return { link, fault, states, restart: () => acceptor = new Acceptor(store) };
}

const encode = (n: number) => new TextEncoder().encode(String(n));
const decode = (register: Register) =>
  register.value === null ? 0 : Number(new TextDecoder().decode(register.value));
const increment = (current: Register): Register => ({
  version: current.version + 1,
  value: encode(decode(current) + 1),
});

Deno.test("compareBallots() orders by counter, then node; null first", () => {
  assert.ok(compareBallots({ counter: 1, node: "b" }, { counter: 2, node: "a" }) < 0);
  assert.ok(compareBallots({ counter: 2, node: "a" }, { counter: 2, node: "b" }) < 0);
  assert.ok(compareBallots(null, { counter: 0, node: "a" }) < 0);
  assert.equal(compareBallots(null, null), 0);
});

Deno.test("Proposer.change() applies changes in order and read() sees the last", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const proposer = new Proposer("p1", () => acceptors.map((a) => a.link));
  assert.deepEqual(await proposer.read("volume/v"), { version: 0, value: null, change: "p1/1" });
  for (let i = 0; i < 5; i++) await proposer.change("volume/v", increment);
  const register = await proposer.read("volume/v");
  assert.deepEqual([register.version, decode(register)], [5, 5]);
});

Deno.test("concurrent proposers never lose an update", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  acceptors[2].fault.delayMs = 2;
  const proposers = ["a", "b", "c"].map((node) =>
    new Proposer(node, () => acceptors.map((a) => a.link))
  );
  const versions = await Promise.all(proposers.map(async (proposer) => {
    const seen: number[] = [];
    for (let i = 0; i < 15; i++) seen.push((await proposer.change("k/x", increment)).version);
    return seen;
  }));
  const all = versions.flat().sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: 45 }, (_, i) => i + 1), "each version won once");
  assert.equal(decode(await proposers[0].read("k/x")), 45);
});

Deno.test("a minority of acceptors down is tolerated; a majority down is refused", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const proposer = new Proposer("p", () => acceptors.map((a) => a.link), () => 0);
  acceptors[0].fault.down = true;
  await proposer.change("k/y", increment);
  acceptors[1].fault.down = true;
  await assert.rejects(proposer.change("k/y", increment), NoQuorumError);
  acceptors[0].fault.down = false;
  acceptors[1].fault.down = false;
  acceptors[2].fault.down = true;
  assert.equal(decode(await proposer.read("k/y")), 1, "the accepted value survived");
});

Deno.test("an aborted change writes nothing; acceptor state survives a restart", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const proposer = new Proposer("p", () => acceptors.map((a) => a.link));
  await proposer.change("k/z", increment);
  await assert.rejects(
    proposer.change("k/z", () => {
      throw new RangeError("version mismatch");
    }),
    /version mismatch/,
  );
  for (const acceptor of acceptors) acceptor.restart();
  const register = await new Proposer("q", () => acceptors.map((a) => a.link)).read("k/z");
  assert.deepEqual([register.version, decode(register)], [1, 1]);
});

Deno.test("a change accepted by a minority and adopted by another is not applied twice", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const links = acceptors.map((a) => a.link);
  // p's accept reaches only acceptor 0: the other two fail during accept.
  let failAccepts = true;
  const flaky: AcceptorLink[] = links.map((link, i) => ({
    prepare: (key, ballot) => link.prepare(key, ballot),
    accept: (key, ballot, register) =>
      failAccepts && i > 0 ? Promise.reject(new Error("lost")) : link.accept(key, ballot, register),
  }));
  const p = new Proposer("p", () => flaky, () => 0);
  const q = new Proposer("q", () => [links[0], links[1]], () => 0);
  const pending = p.change("k/w", increment);
  await new Promise((resolve) => setTimeout(resolve, 5));
  // q reads through acceptor 0, adopting p's partially accepted increment.
  assert.equal(decode(await q.read("k/w")), 1);
  failAccepts = false;
  const register = await pending;
  assert.equal(decode(register), 1, "p's retry found its own change applied");
  assert.equal(decode(await q.read("k/w")), 1);
});

Deno.test("read()'s fast path answers only a value a majority accepted, and never writes", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const peeking = acceptors.map(({ link, fault }, i): AcceptorLink => ({
    ...link,
    peek: (key) => {
      if (fault.down) return Promise.reject(new Error("unreachable"));
      const state = acceptors[i].states.get(key);
      return Promise.resolve({
        accepted: state?.accepted ?? null,
        register: state?.register ?? { version: 0, value: null },
      });
    },
  }));
  const writer = new Proposer("w", () => peeking);
  const reader = new Proposer("r", () => peeking);
  await writer.change("volume/v", increment);
  const saved = JSON.stringify([...acceptors[0].states]);
  assert.equal(decode(await reader.read("volume/v")), 1);
  assert.equal(JSON.stringify([...acceptors[0].states]), saved, "the fast path wrote nothing");

  // A change that reached only one acceptor is not chosen: the majority's agreeing
  // value may be answered, or the full round adopts the newer one; never anything else.
  acceptors[1].fault.down = true;
  acceptors[2].fault.down = true;
  await assert.rejects(writer.change("volume/v", increment), NoQuorumError);
  acceptors[1].fault.down = false;
  acceptors[2].fault.down = false;
  assert.ok([1, 2].includes(decode(await reader.read("volume/v"))));
  // With the acceptors disagreeing, the read is a full round: afterwards they agree.
  acceptors[2].fault.down = true;
  const value = decode(await reader.read("volume/v"));
  acceptors[2].fault.down = false;
  assert.equal(decode(await reader.read("volume/v")), value, "reads never go back");
});
