// Unit tests of one Membership's message handling: each test drives a single node with
// hand-written messages through a manual clock, and reads what it sends and records.

import assert from "node:assert/strict";
import {
  Membership,
  type MembershipEnv,
  type MemberState,
  type TimerHandle,
} from "./membership.ts";
import type { DatagramMessage, MemberDigest, MemberInfo, Message, Update } from "./messages.ts";
import { Random } from "../sim/mod.ts";

interface Sent {
  to: string;
  message: Message;
  stream: boolean;
}

/** A clock that moves only when told, timers run in due order, and sends are recorded. */
class ManualEnv implements MembershipEnv {
  nowMs = 0;
  sent: Sent[] = [];
  #timers: { dueMs: number; seq: number; fn: () => void; cancelled: boolean }[] = [];
  #seq = 0;
  #random = new Random(1);

  now = () => this.nowMs;
  random = () => this.#random.next();
  schedule = (delayMs: number, fn: () => void): TimerHandle => {
    const timer = { dueMs: this.nowMs + delayMs, seq: this.#seq++, fn, cancelled: false };
    this.#timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  };
  send = (to: string, message: Message) => void this.sent.push({ to, message, stream: false });
  sendReliable = (to: string, message: Message) =>
    void this.sent.push({ to, message, stream: true });

  /** Runs every timer due up to `now + ms`, in order, then sets the clock there. */
  advance(ms: number): void {
    const end = this.nowMs + ms;
    for (;;) {
      const due = this.#timers.filter((t) => !t.cancelled && t.dueMs <= end);
      if (due.length === 0) break;
      due.sort((a, b) => a.dueMs - b.dueMs || a.seq - b.seq);
      const timer = due[0];
      timer.cancelled = true;
      this.nowMs = Math.max(this.nowMs, timer.dueMs);
      timer.fn();
    }
    this.nowMs = end;
  }

  /** Takes the messages sent so far. */
  drain(): Sent[] {
    const sent = this.sent;
    this.sent = [];
    return sent;
  }
}

const self: MemberInfo = { id: "a", address: "10.0.0.1:7946", zone: "z1", weight: 1 };
const peerB: MemberInfo = { id: "b", address: "10.0.0.2:7946", zone: null, weight: 1 };
const peerC: MemberInfo = { id: "c", address: "10.0.0.3:7946", zone: null, weight: 2 };

function alive(info: MemberInfo, incarnation: number): Update {
  return { kind: "alive", ...info, incarnation };
}

function gossip(...updates: Update[]): Message {
  return { type: "gossip", source: "x", updates };
}

/** A started node that knows b and c (alive at incarnation 0), and its recorded changes. */
function started(config = {}) {
  const env = new ManualEnv();
  const node = new Membership(self, env, config);
  const changes: MemberState[] = [];
  node.onChange((m) => changes.push(m));
  node.start([]);
  node.receive("x", gossip(alive(peerB, 0), alive(peerC, 0)));
  env.drain();
  changes.length = 0;
  return { env, node, changes };
}

function stateOf(node: Membership, id: string): MemberState | undefined {
  return node.members().find((m) => m.id === id);
}

function updatesSent(sent: Sent[]): Update[] {
  return sent.flatMap((s) => "updates" in s.message ? (s.message as DatagramMessage).updates : []);
}

Deno.test("ping is answered with an ack to replyTo carrying the same seq", () => {
  const { env, node } = started();
  node.receive("x", {
    type: "ping",
    seq: 41,
    target: "a",
    source: "b",
    replyTo: peerB.address,
    stream: false,
    updates: [],
  });
  const [reply] = env.drain();
  assert.equal(reply.to, peerB.address);
  assert.equal(reply.stream, false);
  assert.equal(reply.message.type, "ack");
  assert.equal((reply.message as { seq: number }).seq, 41);
});

Deno.test("a ping for another id at our address is ignored", () => {
  const { env, node } = started();
  node.receive("x", {
    type: "ping",
    seq: 1,
    target: "someone-else",
    source: "b",
    replyTo: peerB.address,
    stream: false,
    updates: [],
  });
  assert.deepEqual(env.drain(), []);
});

Deno.test("a stream ping is answered over a stream", () => {
  const { env, node } = started();
  node.receive("x", {
    type: "ping",
    seq: 5,
    target: "a",
    source: "b",
    replyTo: peerB.address,
    stream: true,
    updates: [],
  });
  const [reply] = env.drain();
  assert.equal(reply.stream, true);
  assert.equal(reply.message.type, "ack");
});

Deno.test("suspicion of this node at its incarnation is refuted with a higher one", () => {
  const { env, node, changes } = started();
  node.receive("x", gossip({ kind: "suspect", id: "a", incarnation: 0, from: "b" }));
  assert.equal(stateOf(node, "a")?.incarnation, 1);
  assert.equal(stateOf(node, "a")?.status, "alive");
  assert.deepEqual(changes.map((m) => [m.id, m.incarnation]), [["a", 1]]);
  env.advance(1_000);
  const refutations = updatesSent(env.drain()).filter((u) => u.id === "a");
  assert.ok(refutations.some((u) => u.kind === "alive" && u.incarnation === 1));
});

Deno.test("refutation beats the accusation's incarnation, not only our own", () => {
  const { node } = started();
  node.receive("x", gossip({ kind: "dead", id: "a", incarnation: 7, from: "b" }));
  assert.equal(stateOf(node, "a")?.incarnation, 8);
  assert.equal(stateOf(node, "a")?.status, "alive");
});

Deno.test("a stale accusation is answered directly, without a new incarnation", () => {
  const { env, node } = started();
  node.receive("x", gossip({ kind: "suspect", id: "a", incarnation: 0, from: "b" }));
  env.drain();
  node.receive("x", {
    type: "gossip",
    source: "c",
    updates: [{ kind: "suspect", id: "a", incarnation: 0, from: "b" }],
  });
  assert.equal(stateOf(node, "a")?.incarnation, 1);
  const sent = env.drain();
  const answer = sent.find((s) => s.to === peerC.address);
  assert.ok(answer, "c is told directly");
  assert.deepEqual((answer.message as DatagramMessage).updates[0], alive(self, 1));
});

Deno.test("alive overrides suspect only with a higher incarnation", () => {
  const { node } = started();
  node.receive("x", gossip({ kind: "suspect", id: "b", incarnation: 0, from: "c" }));
  assert.equal(stateOf(node, "b")?.status, "suspect");
  node.receive("x", gossip(alive(peerB, 0)));
  assert.equal(stateOf(node, "b")?.status, "suspect", "same incarnation: still suspect");
  node.receive("x", gossip(alive(peerB, 1)));
  assert.equal(stateOf(node, "b")?.status, "alive");
  assert.equal(stateOf(node, "b")?.incarnation, 1);
});

Deno.test("suspect overrides alive at the same incarnation, not at a lower one", () => {
  const { node } = started();
  node.receive("x", gossip(alive(peerB, 3)));
  node.receive("x", gossip({ kind: "suspect", id: "b", incarnation: 2, from: "c" }));
  assert.equal(stateOf(node, "b")?.status, "alive");
  node.receive("x", gossip({ kind: "suspect", id: "b", incarnation: 3, from: "c" }));
  assert.equal(stateOf(node, "b")?.status, "suspect");
});

Deno.test("dead overrides suspect; suspect and older alive do not revive the dead", () => {
  const { node, changes } = started();
  node.receive("x", gossip({ kind: "suspect", id: "b", incarnation: 0, from: "c" }));
  node.receive("x", gossip({ kind: "dead", id: "b", incarnation: 0, from: "c" }));
  assert.equal(stateOf(node, "b")?.status, "dead");
  node.receive("x", gossip({ kind: "suspect", id: "b", incarnation: 5, from: "c" }));
  node.receive("x", gossip(alive(peerB, 0)));
  assert.equal(stateOf(node, "b")?.status, "dead");
  node.receive("x", gossip(alive(peerB, 1)));
  assert.equal(stateOf(node, "b")?.status, "alive", "a refutation revives it");
  assert.deepEqual(changes.map((m) => m.status), ["suspect", "dead", "alive"]);
});

Deno.test("left is final: nothing at its incarnation or below changes it", () => {
  const { node } = started();
  node.receive("x", gossip({ kind: "left", id: "b", incarnation: 2 }));
  assert.equal(stateOf(node, "b")?.status, "left");
  for (
    const update of [
      { kind: "suspect", id: "b", incarnation: 2, from: "c" },
      { kind: "dead", id: "b", incarnation: 9, from: "c" },
      alive(peerB, 2),
    ] as Update[]
  ) {
    node.receive("x", gossip(update));
    assert.equal(stateOf(node, "b")?.status, "left", JSON.stringify(update));
  }
  // Only the member itself, rejoining with a higher incarnation, comes back.
  node.receive("x", gossip(alive(peerB, 3)));
  assert.equal(stateOf(node, "b")?.status, "alive");
});

Deno.test("a graceful leave wins over a death declared at the same incarnation", () => {
  const { node } = started();
  node.receive("x", gossip({ kind: "dead", id: "b", incarnation: 0, from: "c" }));
  node.receive("x", gossip({ kind: "left", id: "b", incarnation: 0 }));
  assert.equal(stateOf(node, "b")?.status, "left");
});

Deno.test("an alive with a higher incarnation carries the member's new address", () => {
  const { node } = started();
  node.receive("x", gossip({ ...alive(peerB, 1), address: "10.9.9.9:7946", weight: 3 } as Update));
  assert.deepEqual(stateOf(node, "b"), {
    id: "b",
    address: "10.9.9.9:7946",
    zone: null,
    weight: 3,
    incarnation: 1,
    status: "alive",
    since: 0,
  });
});

Deno.test("updates about unknown members: alive adds one, others are ignored", () => {
  const { node } = started();
  node.receive("x", gossip({ kind: "suspect", id: "d", incarnation: 0, from: "b" }));
  node.receive("x", gossip({ kind: "dead", id: "e", incarnation: 0, from: "b" }));
  assert.deepEqual(node.members().map((m) => m.id), ["a", "b", "c"]);
  node.receive("x", gossip(alive({ id: "d", address: "10.0.0.4:7946", zone: "z2", weight: 1 }, 0)));
  assert.deepEqual(node.members().map((m) => m.id), ["a", "b", "c", "d"]);
});

Deno.test("malformed messages are dropped without effect", () => {
  const { env, node } = started();
  const bad: unknown[] = [
    null,
    "ping",
    { type: "ping", seq: -1, target: "a", source: "b", replyTo: "x:1", stream: false, updates: [] },
    { type: "gossip", source: "b", updates: [{ kind: "alive", id: "d" }] },
    {
      type: "gossip",
      source: "b",
      updates: new Array(100).fill({ kind: "left", id: "b", incarnation: 0 }),
    },
    {
      type: "push-pull",
      phase: "request",
      join: false,
      source: "b",
      replyTo: "x:1",
      members: [{}],
    },
    { type: "nope", source: "b" },
  ];
  for (const message of bad) node.receive("x", message as Message);
  assert.deepEqual(env.drain(), []);
  assert.deepEqual(node.members().map((m) => m.status), ["alive", "alive", "alive"]);
});

Deno.test("a push-pull's dead entry is only suspected, and the request is answered", () => {
  const { env, node } = started();
  const digest = (info: MemberInfo, status: MemberDigest["status"]): MemberDigest => ({
    ...info,
    incarnation: 0,
    status,
  });
  node.receive("x", {
    type: "push-pull",
    phase: "request",
    join: false,
    source: "c",
    replyTo: peerC.address,
    members: [digest(peerB, "dead"), digest(peerC, "alive")],
  });
  assert.equal(stateOf(node, "b")?.status, "suspect");
  const reply = env.drain().find((s) => s.message.type === "push-pull");
  assert.ok(reply && reply.stream && reply.to === peerC.address);
  const response = reply.message as { phase: string; members: MemberDigest[] };
  assert.equal(response.phase, "response");
  assert.deepEqual(response.members.map((m) => [m.id, m.status]), [
    ["a", "alive"],
    ["b", "suspect"],
    ["c", "alive"],
  ]);
});

Deno.test("start() joins through its seeds over streams, retrying until answered", () => {
  const env = new ManualEnv();
  const node = new Membership(self, env);
  node.start([self.address, peerB.address]);
  let requests = env.drain().filter((s) => s.message.type === "push-pull");
  assert.deepEqual(requests.map((s) => [s.to, s.stream]), [[peerB.address, true]]);
  env.advance(1_001);
  requests = env.drain().filter((s) => s.message.type === "push-pull");
  assert.equal(requests.length, 1, "retried after joinRetryMs");
  node.receive("x", {
    type: "push-pull",
    phase: "response",
    join: true,
    source: "b",
    replyTo: peerB.address,
    members: [{ ...peerB, incarnation: 4, status: "alive" }],
  });
  assert.equal(stateOf(node, "b")?.incarnation, 4);
  env.advance(10_000);
  requests = env.drain().filter((s) =>
    s.message.type === "push-pull" && (s.message as { join: boolean }).join
  );
  assert.equal(requests.length, 0, "no retry once joined");
});

Deno.test("a join's answer is not gossiped again, but the joiner's own alive is", () => {
  const env = new ManualEnv();
  const node = new Membership(self, env);
  node.start([peerB.address]);
  node.receive("x", {
    type: "push-pull",
    phase: "response",
    join: true,
    source: "b",
    replyTo: peerB.address,
    members: [{ ...peerB, incarnation: 0, status: "alive" }, {
      ...peerC,
      incarnation: 0,
      status: "alive",
    }],
  });
  env.advance(2_000);
  const gossiped = updatesSent(env.drain()).filter((u) => u.kind === "alive");
  assert.ok(gossiped.every((u) => u.id === "a"), JSON.stringify(gossiped));
  assert.ok(gossiped.length > 0);
});

Deno.test("a member that misses its probes is suspected, then declared dead", () => {
  const { env, node } = started({ pauseToleranceMs: 0 });
  const changes: MemberState[] = [];
  node.onChange((m) => changes.push(m));
  // Nobody answers anything: b and c are both silent.
  env.advance(60_000);
  const statuses = (id: string) => changes.filter((m) => m.id === id).map((m) => m.status);
  assert.deepEqual(statuses("b"), ["suspect", "dead"]);
  assert.deepEqual(statuses("c"), ["suspect", "dead"]);
  const sentTypes = new Set(env.drain().map((s) => s.message.type));
  for (const type of ["ping", "ping-req"]) assert.ok(sentTypes.has(type as Message["type"]), type);
});

Deno.test("leave() marks this node left, gossips it, and stops", () => {
  const { env, node, changes } = started();
  node.leave();
  assert.equal(stateOf(node, "a")?.status, "left");
  assert.deepEqual(changes.map((m) => [m.id, m.status]), [["a", "left"]]);
  env.advance(3_000);
  const left = updatesSent(env.drain()).filter((u) => u.kind === "left" && u.id === "a");
  assert.ok(left.length > 0);
  // Stopped: accusations are no longer refuted, nothing is sent.
  node.receive("x", gossip({ kind: "suspect", id: "a", incarnation: 0, from: "b" }));
  env.advance(10_000);
  assert.deepEqual(env.drain(), []);
  assert.equal(stateOf(node, "a")?.incarnation, 0);
});

Deno.test("a timer that fires late makes the node refute at once and accuse nobody", () => {
  const { env, node, changes } = started();
  // Stop the world: every timer fires 8 s late, as after a SIGSTOP.
  env.nowMs += 8_000;
  env.advance(0);
  assert.equal(stateOf(node, "a")?.incarnation, 1, "refuted proactively");
  env.advance(900);
  assert.ok(changes.every((m) => m.status !== "suspect"), JSON.stringify(changes));
});

Deno.test("stop() cancels every timer", () => {
  const env = new ManualEnv();
  const node = new Membership(self, env);
  node.start([peerB.address]);
  node.stop();
  env.drain();
  env.advance(120_000);
  assert.deepEqual(env.drain(), []);
});

Deno.test("constructor rejects malformed member info and config", () => {
  const env = new ManualEnv();
  assert.throws(() => new Membership({ ...self, id: "" }, env), TypeError);
  assert.throws(() => new Membership({ ...self, address: 'a"b' }, env), TypeError);
  assert.throws(() => new Membership({ ...self, weight: -1 }, env), TypeError);
  assert.throws(() => new Membership(self, env, { probeTimeoutMs: 2_000 }), RangeError);
  assert.throws(() => new Membership(self, env, { gossipFanout: -1 }), RangeError);
});

Deno.test("a ping that accuses this node gets the refutation first in its ack", () => {
  const { env, node } = started();
  node.receive("x", {
    type: "ping",
    seq: 9,
    target: "a",
    source: "b",
    replyTo: peerB.address,
    stream: false,
    updates: [{ kind: "suspect", id: "a", incarnation: 0, from: "b" }],
  });
  const [reply] = env.drain();
  assert.equal(reply.message.type, "ack");
  assert.deepEqual((reply.message as DatagramMessage).updates[0], alive(self, 1));
});

Deno.test("pings to a suspect name its suspicion (the buddy system) and carry nothing else", () => {
  const { env, node } = started();
  node.receive("x", gossip({ kind: "suspect", id: "b", incarnation: 0, from: "c" }));
  env.drain();
  env.advance(3_000);
  const pings = env.drain().filter((s) => s.to === peerB.address && s.message.type === "ping");
  assert.ok(pings.length > 0);
  for (const ping of pings) {
    const updates = (ping.message as DatagramMessage).updates;
    assert.deepEqual(
      updates,
      ping.stream ? [] : [{ kind: "suspect", id: "b", incarnation: 0, from: "a" }],
    );
  }
});

Deno.test("a suspect that answers the verification probes is not declared dead", () => {
  const { env, node, changes } = started();
  node.receive("x", gossip({ kind: "suspect", id: "b", incarnation: 0, from: "c" }));
  // b answers every ping it gets (refuting, as a live member would); c never answers.
  for (let t = 0; t < 40; t += 1) {
    env.advance(500);
    for (const sent of env.drain()) {
      if (sent.to !== peerB.address || sent.message.type !== "ping") continue;
      const ping = sent.message as { seq: number };
      node.receive("x", { type: "ack", seq: ping.seq, source: "b", updates: [alive(peerB, 1)] });
    }
  }
  const aboutB = changes.filter((m) => m.id === "b").map((m) => `${m.status}@${m.incarnation}`);
  assert.deepEqual(aboutB, ["suspect@0", "alive@1"]);
  assert.equal(stateOf(node, "c")?.status, "dead");
});

Deno.test("a node that gets no nacks stretches its probe interval (Lifeguard's LHM)", () => {
  // b and c never answer probes, and their helpers never nack, but they keep refuting by
  // gossip: this node, not they, looks unhealthy.
  const count = (config: object) => {
    const { env, node } = started(config);
    let pings = 0;
    for (let incarnation = 1; incarnation <= 15; incarnation += 1) {
      env.advance(2_000);
      node.receive("x", gossip(alive(peerB, incarnation), alive(peerC, incarnation)));
      pings += env.drain().filter((s) => s.message.type === "ping" && !s.stream).length;
    }
    return pings;
  };
  const unaware = count({ awarenessMax: 1 });
  const aware = count({});
  assert.ok(aware < unaware / 2, `${aware} pings with LHM, ${unaware} without`);
});

Deno.test("members() is one frozen array until the table changes, then a new one", () => {
  const { node } = started();
  const first = node.members();
  assert.equal(node.members(), first, "nothing changed: the same array");
  assert.throws(() => (first as MemberState[]).push(first[0]), TypeError);
  assert.throws(() => (first[1] as { status: string }).status = "dead", TypeError);
  node.receive("x", gossip({ kind: "suspect", id: "b", incarnation: 0, from: "c" }));
  const second = node.members();
  assert.notEqual(second, first);
  assert.deepEqual(second.map((m) => m.status), ["alive", "suspect", "alive"]);
  assert.deepEqual(first.map((m) => m.status), ["alive", "alive", "alive"], "the old one kept");
  node.receive(
    "x",
    gossip(alive({ id: "aa", address: "10.0.0.5:7946", zone: null, weight: 1 }, 0)),
  );
  assert.deepEqual(node.members().map((m) => m.id), ["a", "aa", "b", "c"], "by id");
  node.leave();
  assert.equal(stateOf(node, "a")?.status, "left", "this node's own change too");
});
