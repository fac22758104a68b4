import assert from "node:assert/strict";
import { Acceptor } from "./acceptor.ts";
import { Proposer } from "./proposer.ts";
import {
  type AcceptorLink,
  type AcceptorState,
  type AcceptorStore,
  compareBallots,
  type ConfigHolder,
  NoQuorumError,
  type Register,
} from "./caspaxos.ts";
import type { MetaConfig } from "./config.ts";

const config: MetaConfig = { epoch: 1, clusterId: "c", voters: ["a0", "a1", "a2"], next: null };

/** A configuration kept in memory (one per node). */
function holder(initial: MetaConfig | null = config): ConfigHolder {
  let current = initial;
  return {
    current: () => current,
    install: (next) => {
      if (current === null || next.epoch > current.epoch) current = next;
      return Promise.resolve();
    },
  };
}

/** An acceptor in memory, reachable through a link that can be cut or slowed. */
function acceptorFixture() {
  const states = new Map<string, AcceptorState>();
  const store: AcceptorStore = {
    load: (key) => Promise.resolve(states.get(key) ?? null),
    save: (key, state) => Promise.resolve(void states.set(key, structuredClone(state))),
  };
  const configs = holder();
  let acceptor = new Acceptor(store, configs);
  // `acceptsLost`: prepares arrive, accepts do not (a proposer that crashes between them).
  const fault = { down: false, delayMs: 0, acceptsLost: false };
  const reach = async <T>(call: () => Promise<T>): Promise<T> => {
    if (fault.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
    if (fault.down) throw new Error("unreachable");
    return await call();
  };
  const link: AcceptorLink = {
    prepare: (key, ballot, config) => reach(() => acceptor.prepare(key, ballot, config)),
    accept: (key, ballot, register, config) =>
      reach(() => {
        if (fault.acceptsLost) throw new Error("the accept was lost");
        return acceptor.accept(key, ballot, register, config);
      }),
  };
  return {
    link,
    fault,
    states,
    configs,
    restart: () => acceptor = new Acceptor(store, configs),
    peekLink: (): AcceptorLink => ({
      ...link,
      peek: (key, config) => reach(() => acceptor.peek(key, config)),
    }),
  };
}

/** A proposer `node` reaching `links` as voters a0, a1, a2. */
function proposer(
  node: string,
  links: () => AcceptorLink[],
  random?: () => number,
  configs: ConfigHolder = holder(),
) {
  return new Proposer({
    node,
    configs,
    link: (id) => links()[Number(id.slice(1))] ?? null,
    random,
  });
}

const encode = (n: number) => new TextEncoder().encode(String(n));
const decode = (register: Register) =>
  register.value === null ? 0 : Number(new TextDecoder().decode(register.value));
const increment = (current: Register): Register => ({
  version: current.version + 1,
  value: encode(decode(current) + 1),
});

Deno.test("compareBallots() orders by epoch, then counter, then node; null first", () => {
  assert.ok(
    compareBallots({ epoch: 1, counter: 9, node: "b" }, { epoch: 2, counter: 1, node: "a" }) < 0,
  );
  assert.ok(
    compareBallots({ epoch: 1, counter: 1, node: "b" }, { epoch: 1, counter: 2, node: "a" }) < 0,
  );
  assert.ok(
    compareBallots({ epoch: 1, counter: 2, node: "a" }, { epoch: 1, counter: 2, node: "b" }) < 0,
  );
  assert.ok(compareBallots(null, { epoch: 0, counter: 0, node: "a" }) < 0);
  assert.equal(compareBallots(null, null), 0);
});

Deno.test("Proposer.change() applies changes in order and read() sees the last", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const p1 = proposer("p1", () => acceptors.map((a) => a.link));
  assert.deepEqual(await p1.read("volume/v"), { version: 0, value: null });
  for (let i = 0; i < 5; i++) await p1.change("volume/v", increment);
  const register = await p1.read("volume/v");
  assert.deepEqual([register.version, decode(register)], [5, 5]);
});

Deno.test("concurrent proposers never lose an update", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  acceptors[2].fault.delayMs = 2;
  const proposers = ["a", "b", "c"].map((node) =>
    proposer(node, () => acceptors.map((a) => a.link))
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
  const p = proposer("p", () => acceptors.map((a) => a.link), () => 0);
  acceptors[0].fault.down = true;
  await p.change("k/y", increment);
  acceptors[1].fault.down = true;
  await assert.rejects(p.change("k/y", increment), NoQuorumError);
  acceptors[0].fault.down = false;
  acceptors[1].fault.down = false;
  acceptors[2].fault.down = true;
  assert.equal(decode(await p.read("k/y")), 1, "the accepted value survived");
});

Deno.test("an aborted change writes nothing; acceptor state survives a restart", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const p = proposer("p", () => acceptors.map((a) => a.link));
  await p.change("k/z", increment);
  await assert.rejects(
    p.change("k/z", () => {
      throw new RangeError("version mismatch");
    }),
    /version mismatch/,
  );
  for (const acceptor of acceptors) acceptor.restart();
  const register = await proposer("q", () => acceptors.map((a) => a.link)).read("k/z");
  assert.deepEqual([register.version, decode(register)], [1, 1]);
});

Deno.test("a change accepted by a minority and adopted by another is not applied twice", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const links = acceptors.map((a) => a.link);
  // p's accept reaches only acceptor 0: the other two fail during accept.
  let failAccepts = true;
  const flaky: AcceptorLink[] = links.map((link, i) => ({
    prepare: (key, ballot, config) => link.prepare(key, ballot, config),
    accept: (key, ballot, register, config) =>
      failAccepts && i > 0
        ? Promise.reject(new Error("lost"))
        : link.accept(key, ballot, register, config),
  }));
  const p = proposer("p", () => flaky, () => 0);
  const q = proposer("q", () => [links[0], links[1]], () => 0);
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
  const peeking = acceptors.map((acceptor) => acceptor.peekLink());
  const writer = proposer("w", () => peeking);
  const reader = proposer("r", () => peeking);
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

Deno.test("an acceptor refuses an older epoch with its configuration; the proposer catches up", async () => {
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const links = () => acceptors.map((a) => a.peekLink());
  const stale = holder();
  const p = proposer("p", links, () => 0, stale);
  await p.change("volume/v", increment);
  const newer: MetaConfig = { ...config, epoch: 2 };
  await acceptors[1].configs.install(newer);
  await acceptors[2].configs.install(newer);
  // Acceptors 1 and 2 refuse epoch 1; the proposer installs epoch 2 and retries.
  assert.equal(decode(await p.change("volume/v", increment)), 2);
  assert.equal(stale.current()!.epoch, 2, "the proposer learned the newer configuration");
  assert.equal(acceptors[0].configs.current()!.epoch, 2, "acceptor 0 learned it from the round");
  for (const acceptor of acceptors) {
    assert.equal(acceptor.states.get("volume/v")!.accepted!.epoch, 2);
  }
  assert.equal(decode(await proposer("r", links, () => 0, holder()).read("volume/v")), 2);
});

Deno.test("a joint configuration needs a majority of both groups", async () => {
  const acceptors = Array.from({ length: 5 }, () => acceptorFixture());
  const joint: MetaConfig = {
    ...config,
    epoch: 2,
    voters: ["a0", "a1", "a2"],
    next: ["a2", "a3", "a4"],
  };
  for (const acceptor of acceptors) await acceptor.configs.install(joint);
  const p = proposer("p", () => acceptors.map((a) => a.link), () => 0, holder(joint));
  await p.change("volume/j", increment);
  // Old group keeps a majority (a0, a1), new group loses it (a3, a4 down): refused.
  acceptors[3].fault.down = true;
  acceptors[4].fault.down = true;
  await assert.rejects(p.change("volume/j", increment), NoQuorumError);
  // New group has a majority (a2, a3), old group has only a2 (a0, a1 down): refused.
  acceptors[3].fault.down = false;
  acceptors[0].fault.down = true;
  acceptors[1].fault.down = true;
  await assert.rejects(p.change("volume/j", increment), NoQuorumError);
  acceptors[0].fault.down = false;
  assert.equal(decode(await p.change("volume/j", increment)), 2);
});

Deno.test("a change found on a minority is written to a quorum before it is acknowledged", async () => {
  // Seed 27 of the simulation: a retry that found its own change on one acceptor
  // returned it as done, although no quorum held it; a later write then lost it.
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const links = acceptors.map((a) => a.link);
  let acceptsReachOnlyFirst = true;
  const flaky: AcceptorLink[] = links.map((link, i) => ({
    prepare: (key, ballot, config) => link.prepare(key, ballot, config),
    accept: (key, ballot, register, config) =>
      acceptsReachOnlyFirst && i > 0
        ? Promise.reject(new Error("lost"))
        : link.accept(key, ballot, register, config),
  }));
  const p = proposer("p", () => flaky, () => 0);
  await assert.rejects(p.change("volume/q", increment), NoQuorumError);
  assert.equal(decode(acceptors[0].states.get("volume/q")!.register), 1, "on acceptor 0 only");
  // A reader through the two others may see the key absent: the change was never chosen.
  const other = proposer("r", () => [links[1], links[2], links[1]], () => 0);
  assert.equal(decode(await other.read("volume/q")), 0);
  acceptsReachOnlyFirst = false;
  assert.equal(decode(await p.change("volume/q", increment)), 1);
});

Deno.test("a refresh keeps the change id, so an adopted change is not applied twice", async () => {
  // Seed 65 of the simulation: the refresh wrote its own id over the change's.
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const links = acceptors.map((a) => a.link);
  let lose = true;
  const flaky: AcceptorLink[] = links.map((link, i) => ({
    prepare: (key, ballot, config) => link.prepare(key, ballot, config),
    accept: (key, ballot, register, config) =>
      lose && i > 0
        ? Promise.reject(new Error("lost"))
        : link.accept(key, ballot, register, config),
  }));
  const p = proposer("p", () => flaky, () => 0);
  const pending = p.change("volume/r", increment);
  await new Promise((resolve) => setTimeout(resolve, 5));
  // p's increment sits on acceptor 0 only; a refresh through 0 and 1 adopts it.
  const reader = proposer("r", () => [links[0], links[1], links[2]], () => 0);
  assert.equal(decode(await reader.refresh("volume/r")), 1);
  assert.match(acceptors[1].states.get("volume/r")!.register.change!, /^p\//, "p's id kept");
  lose = false;
  // p's own retry finds its change and proposes it again; it never applies it twice.
  assert.equal(decode(await pending), 1);
  assert.equal(decode(await reader.read("volume/r")), 1);
});

Deno.test("a value left on one acceptor: a read may miss it and a later one choose it; a refresh settles it", async () => {
  // Seed 410496 of the data-path simulation at 687b6de: an upload's image record reached
  // only its node's own acceptor before the node crashed; a collection's listing read it
  // as absent and swept the image's blocks, and a later read chose the record.
  const acceptors = [acceptorFixture(), acceptorFixture(), acceptorFixture()];
  const peeking = acceptors.map((acceptor) => acceptor.peekLink());
  const writer = proposer("w", () => peeking);
  const reader = proposer("r", () => peeking);
  const leaveOnA2 = async (key: string) => {
    acceptors[0].fault.acceptsLost = true;
    acceptors[1].fault.acceptsLost = true;
    await assert.rejects(writer.change(key, increment), NoQuorumError);
    acceptors[0].fault.acceptsLost = false;
    acceptors[1].fault.acceptsLost = false;
  };
  await leaveOnA2("image/missed");
  acceptors[2].fault.down = true; // a2 answers too late for the read
  assert.equal((await reader.read("image/missed")).value, null);
  acceptors[2].fault.down = false;
  acceptors[0].fault.down = true;
  assert.equal(decode(await reader.read("image/missed")), 1, "a later read chose it");
  acceptors[0].fault.down = false;

  // A refresh's full round chooses the value or writes its absence over it, for good.
  await leaveOnA2("image/settled");
  const settled = (await reader.refresh("image/settled")).value;
  for (const down of [0, 1, 2]) {
    acceptors[down].fault.down = true;
    assert.deepEqual((await reader.read("image/settled")).value, settled, `a${down} down`);
    acceptors[down].fault.down = false;
  }
});
