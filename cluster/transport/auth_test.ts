import assert from "node:assert/strict";
import {
  channelBytes,
  clockSkewMaxMs,
  ClusterKey,
  type OpenChecks,
  RefusalError,
  type RefusalReason,
  toHex,
} from "./auth.ts";
import { MemoryIdentity, newClusterId } from "./identity.ts";
import { ReplayGuard } from "./replay_guard.ts";

const encoder = new TextEncoder();
const key = new ClusterKey(encoder.encode("k".repeat(40)));
const other = new ClusterKey(encoder.encode("o".repeat(40)));
const payload = encoder.encode('{"type":"ping"}');
const boot = new Uint8Array(channelBytes).fill(7);
const nowMs = 1_750_000_000_000;

/** Seals `payload` as node `identity` whose clock reads `clockMs`, as datagram `sequence`. */
function seal(sequence: number, options: { identity?: MemoryIdentity; clockMs?: number } = {}) {
  return key.seal(payload, {
    nowMs: options.clockMs ?? nowMs,
    identity: options.identity ?? new MemoryIdentity(),
    channel: boot,
    sequence,
  });
}

/** Checks as a receiver keeping datagram windows in `guard`. */
function checks(guard = new ReplayGuard(8), identity = new MemoryIdentity()): OpenChecks {
  return {
    nowMs,
    identity,
    fresh: (channel, sequence) => guard.accept(toHex(channel), sequence, true),
  };
}

/** The reason `open` refuses `envelope` for. */
function refusal(open: () => unknown): RefusalError {
  try {
    open();
  } catch (error) {
    if (error instanceof RefusalError) return error;
    throw error;
  }
  assert.fail("the envelope was accepted");
}

function reasonOf(open: () => unknown): RefusalReason {
  return refusal(open).reason;
}

Deno.test("ClusterKey.open() returns what seal() sealed, with its channel and sequence", () => {
  const opened = key.open(seal(3, { clockMs: nowMs + 1500 }), checks());
  assert.deepEqual(opened.payload, payload);
  assert.deepEqual(opened.channel, boot);
  assert.equal(opened.sequence, 3);
  assert.equal(opened.skewMs, 1500);
});

Deno.test("ClusterKey.open() refuses forged, wrong-key and malformed envelopes as authentication", () => {
  const envelope = seal(1);
  const forged = envelope.slice();
  forged[70] ^= 1;
  assert.match(refusal(() => key.open(forged, checks())).detail, /bad MAC/);
  assert.match(refusal(() => other.open(envelope, checks())).detail, /another cluster key/);
  assert.equal(reasonOf(() => key.open(payload, checks())), "authentication");
  assert.equal(reasonOf(() => key.open(envelope.subarray(0, 80), checks())), "authentication");
  const forgedId = envelope.slice();
  forgedId[12] ^= 1; // a cluster id changed in flight: the MAC covers it
  assert.match(refusal(() => key.open(forgedId, checks())).detail, /bad MAC/);
});

Deno.test("ClusterKey.open() refuses a replayed datagram, and accepts out-of-order ones once", () => {
  const guard = new ReplayGuard(8);
  const second = seal(2);
  key.open(second, checks(guard));
  key.open(seal(1), checks(guard));
  assert.equal(reasonOf(() => key.open(second, checks(guard))), "replay");
  assert.equal(reasonOf(() => key.open(seal(1), checks(guard))), "replay");
  key.open(seal(3), checks(guard));
});

Deno.test("ClusterKey.open() refuses a sender 10 minutes off as clock-skew, accepts 2 minutes", () => {
  const ahead = refusal(() => key.open(seal(1, { clockMs: nowMs + 10 * 60_000 }), checks()));
  assert.equal(ahead.reason, "clock-skew");
  assert.equal(ahead.detail, "clock 600 s ahead of ours (limit 300 s)");
  assert.equal(ahead.sender.skewMs, 600_000);
  const behind = refusal(() => key.open(seal(1, { clockMs: nowMs - 10 * 60_000 }), checks()));
  assert.equal(behind.detail, "clock 600 s behind ours (limit 300 s)");
  assert.equal(key.open(seal(1, { clockMs: nowMs + 2 * 60_000 }), checks()).skewMs, 120_000);
  assert.equal(key.open(seal(1, { clockMs: nowMs - 2 * 60_000 }), checks()).skewMs, -120_000);
  assert.equal(
    reasonOf(() => key.open(seal(1, { clockMs: nowMs + clockSkewMaxMs + 1 }), checks())),
    "clock-skew",
  );
});

Deno.test("a refused message uses up no sequence number", () => {
  const guard = new ReplayGuard(8);
  assert.equal(
    reasonOf(() => key.open(seal(1, { clockMs: nowMs + 10 * 60_000 }), checks(guard))),
    "clock-skew",
  );
  assert.equal(guard.size, 0);
  key.open(seal(1), checks(guard));
});

Deno.test("ClusterKey.open() refuses another cluster's id and adopts the first id it hears", () => {
  const ours = newClusterId();
  const theirs = newClusterId();
  const member = new MemoryIdentity(ours);
  const stranger = refusal(() =>
    key.open(seal(1, { identity: new MemoryIdentity(theirs) }), checks(undefined, member))
  );
  assert.equal(stranger.reason, "cluster-id");
  assert.match(stranger.detail, new RegExp(`cluster ${theirs}, this node to cluster ${ours}`));
  // A node that has not joined yet sends zeros: accepted, and our id stays.
  key.open(seal(1), checks(undefined, member));
  assert.equal(member.current(), ours);
  key.open(seal(1, { identity: new MemoryIdentity(ours) }), checks(undefined, member));
  // A node without an id takes the id of the first authentic message carrying one.
  const joining = new MemoryIdentity(null);
  key.open(seal(1), checks(undefined, joining));
  assert.equal(joining.current(), null);
  key.open(seal(1, { identity: new MemoryIdentity(theirs) }), checks(undefined, joining));
  assert.equal(joining.current(), theirs);
});

Deno.test("a replayed or skewed message is never adopted from", () => {
  const guard = new ReplayGuard(8);
  key.open(seal(1), checks(guard));
  const joining = new MemoryIdentity(null);
  const id = newClusterId();
  const skewed = seal(2, { identity: new MemoryIdentity(id), clockMs: nowMs + 3_600_000 });
  assert.equal(reasonOf(() => key.open(skewed, checks(guard, joining))), "clock-skew");
  const replayed = seal(1, { identity: new MemoryIdentity(id) });
  assert.equal(reasonOf(() => key.open(replayed, checks(guard, joining))), "replay");
  assert.equal(joining.current(), null);
});

Deno.test("ClusterKey refuses keys shorter than 32 bytes", () => {
  assert.throws(() => new ClusterKey(encoder.encode("short")), RangeError);
});
