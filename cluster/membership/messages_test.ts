import assert from "node:assert/strict";
import {
  baseBytesMax,
  type DatagramMessage,
  type Message,
  updateBytes,
  updatesPerMessageMax,
} from "./messages.ts";
import { parseMessage } from "./parse_messages.ts";

const ping: Message = {
  type: "ping",
  seq: 12,
  target: "n1",
  source: "n2",
  replyTo: "10.0.0.2:7946",
  stream: false,
  updates: [
    { kind: "alive", id: "n3", address: "10.0.0.3:7946", zone: null, weight: 1, incarnation: 4 },
    { kind: "suspect", id: "n4", incarnation: 0, from: "n2" },
    { kind: "dead", id: "n5", incarnation: 2, from: "n2" },
    { kind: "left", id: "n6", incarnation: 9 },
  ],
};

Deno.test("parseMessage() accepts every message type and survives a JSON round trip", () => {
  const messages: Message[] = [
    ping,
    { type: "ack", seq: 0, source: "n1", updates: [] },
    { type: "nack", seq: 3, source: "n1", updates: [] },
    {
      type: "ping-req",
      seq: 3,
      target: "n1",
      targetAddress: "10.0.0.1:7946",
      source: "n2",
      replyTo: "10.0.0.2:7946",
      updates: [],
    },
    { type: "gossip", source: "n1", updates: ping.type === "ping" ? ping.updates : [] },
    {
      type: "push-pull",
      phase: "request",
      join: true,
      source: "n1",
      replyTo: "10.0.0.1:7946",
      members: [{ id: "n1", address: "a:1", zone: "z", weight: 0, incarnation: 1, status: "left" }],
    },
  ];
  for (const message of messages) {
    assert.deepEqual(parseMessage(JSON.parse(JSON.stringify(message))), message);
  }
});

Deno.test("parseMessage() rejects wrong shapes, bad strings and out-of-range numbers", () => {
  const bad: unknown[] = [
    undefined,
    [],
    { ...ping, type: "pong" },
    { ...ping, source: "" },
    { ...ping, source: "has space" },
    { ...ping, source: 'quote"' },
    { ...ping, target: "x".repeat(129) },
    { ...ping, seq: 1.5 },
    { ...ping, seq: -1 },
    { ...ping, seq: 2 ** 60 },
    { ...ping, stream: "no" },
    { ...ping, updates: {} },
    { ...ping, updates: [{ kind: "alive", id: "n3", incarnation: 0 }] },
    { ...ping, updates: [{ kind: "suspect", id: "n3", incarnation: 0 }] },
    {
      ...ping,
      updates: [{ kind: "alive", id: "n3", address: "a:1", zone: 5, weight: 1, incarnation: 0 }],
    },
    {
      ...ping,
      updates: [{
        kind: "alive",
        id: "n3",
        address: "a:1",
        zone: null,
        weight: NaN,
        incarnation: 0,
      }],
    },
    {
      ...ping,
      updates: new Array(updatesPerMessageMax + 1).fill({ kind: "left", id: "a", incarnation: 0 }),
    },
    { type: "push-pull", phase: "both", join: false, source: "n1", replyTo: "a:1", members: [] },
    {
      type: "push-pull",
      phase: "request",
      join: false,
      source: "n1",
      replyTo: "a:1",
      members: [{ id: "x" }],
    },
  ];
  for (const value of bad) assert.equal(parseMessage(value), undefined, JSON.stringify(value));
});

Deno.test("baseBytesMax() bounds a datagram's JSON without its updates", () => {
  const messages: DatagramMessage[] = [
    { ...ping, updates: [] } as DatagramMessage,
    { ...ping, stream: true, seq: 2 ** 52, updates: [] } as DatagramMessage,
    { type: "ack", seq: 123456789, source: "n".repeat(128), updates: [] },
    { type: "gossip", source: "n1", updates: [] },
  ];
  for (const message of messages) {
    const bytes = JSON.stringify(message).length;
    assert.ok(
      baseBytesMax(message) >= bytes,
      `${message.type}: ${baseBytesMax(message)} < ${bytes}`,
    );
    assert.ok(baseBytesMax(message) <= bytes + 16, `${message.type}: estimate is loose`);
  }
  const update = ping.type === "ping" ? ping.updates[0] : undefined;
  assert.equal(updateBytes(update!), JSON.stringify(update).length + 1);
});
