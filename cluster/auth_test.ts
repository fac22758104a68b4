import assert from "node:assert/strict";
import { AuthenticationError, ClusterKey, NonceWindow, replayWindowMs } from "./auth.ts";

const encoder = new TextEncoder();
const key = new ClusterKey(encoder.encode("k".repeat(40)));
const other = new ClusterKey(encoder.encode("o".repeat(40)));
const payload = encoder.encode('{"type":"ping"}');

Deno.test("ClusterKey.open() returns what seal() sealed", () => {
  const envelope = key.seal(payload, 1000);
  assert.deepEqual(key.open(envelope, 1000, new NonceWindow()), payload);
});

Deno.test("ClusterKey.open() refuses forged, replayed, stale and wrong-cluster envelopes", () => {
  const nonces = new NonceWindow();
  const envelope = key.seal(payload, 5000);
  const forged = envelope.slice();
  forged[30] ^= 1;
  assert.throws(() => key.open(forged, 5000, nonces), /bad MAC/);
  assert.throws(() => other.open(envelope, 5000, nonces), /another cluster key/);
  assert.equal(key.open(envelope, 5000, nonces).length, payload.length);
  assert.throws(() => key.open(envelope, 5001, nonces), /replayed/);
  assert.throws(
    () => key.open(key.seal(payload, 0), replayWindowMs + 1, nonces),
    /stale or future/,
  );
  assert.throws(() => key.open(payload, 0, nonces), AuthenticationError);
});

Deno.test("ClusterKey refuses keys shorter than 32 bytes", () => {
  assert.throws(() => new ClusterKey(encoder.encode("short")), RangeError);
});
