/**
 * Goal: a handle from PatientAuthority tries a request again while it fails as
 * unavailable, up to its wait, and fails at once for anything else, or when its
 * node says waiting cannot help.
 * Method: a scripted inner handle whose requests fail a given number of times,
 * on a clock that moves only when slept on (the wait is 60 s of it, no real time).
 * The same wrapper over a real cluster: tests/cluster_degraded_test.ts.
 */
import assert from "node:assert/strict";
import type { Clock } from "./clock.ts";
import { LeaseLostError, UnavailableError } from "./errors.ts";
import type { VolumeHandle } from "./authority.ts";
import { isUnavailable, PatientAuthority } from "./patient_authority.ts";

/** A clock whose time passes only in sleep(). */
function steppingClock(): Clock {
  let now = 0;
  return {
    now: () => now,
    sleep: (ms) => {
      now += ms;
      return Promise.resolve();
    },
  };
}

/** An inner authority whose handle's writes throw `failures` errors in turn, then succeed. */
function scripted(
  failures: Error[],
  waits?: () => boolean,
): { authority: PatientAuthority; attempts: () => number } {
  let attempts = 0;
  const handle = {
    name: "v",
    sizeBytes: 4096,
    canWrite: true,
    canMultiConn: true,
    write: () => {
      const failure = failures[attempts++];
      return failure === undefined ? Promise.resolve() : Promise.reject(failure);
    },
  } as unknown as VolumeHandle;
  const authority = new PatientAuthority({ open: () => Promise.resolve(handle) }, {
    clock: steppingClock(),
    waits,
  });
  return { authority, attempts: () => attempts };
}

/** An error as the cluster throws it: its class name is all core knows of it. */
function named(name: string, message: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), { name, ...extra });
}

Deno.test("a request that fails as unavailable is tried again until it is served", async () => {
  const quorum = named("ReplicaQuorumError", "1 of 2 replicas took it, 2 needed");
  const { authority, attempts } = scripted([quorum, quorum, new UnavailableError("no voters")]);
  const handle = await authority.open("v");
  await handle.write(0, new Uint8Array(4096), false);
  assert.equal(attempts(), 4);
});

Deno.test("a request still unavailable after the wait fails with the last error", async () => {
  const failures = Array.from({ length: 200 }, (_, i) => new UnavailableError(`attempt ${i}`));
  const { authority, attempts } = scripted(failures);
  const handle = await authority.open("v");
  await assert.rejects(handle.write(0, new Uint8Array(4096), false), UnavailableError);
  // 50 ms doubling to 1 s: about 65 attempts fit in 60 s, far fewer than 200.
  assert.ok(attempts() > 50 && attempts() < 80, `${attempts()} attempts`);
});

Deno.test("a node that says waiting cannot help (cut off from most members) fails at once", async () => {
  const unavailable = () => new UnavailableError("no voters");
  let cutOff = true;
  const { authority, attempts } = scripted([unavailable(), unavailable()], () => !cutOff);
  const handle = await authority.open("v");
  await assert.rejects(handle.write(0, new Uint8Array(4096), false), UnavailableError);
  assert.equal(attempts(), 1);
  cutOff = false;
  await handle.write(0, new Uint8Array(4096), false); // waits out the second, served by the third
  assert.equal(attempts(), 3);
});

Deno.test("anything but unavailability fails at once", async () => {
  const { authority, attempts } = scripted([new LeaseLostError("the lease moved")]);
  const handle = await authority.open("v");
  await assert.rejects(handle.write(0, new Uint8Array(4096), false), LeaseLostError);
  assert.equal(attempts(), 1);
});

Deno.test("isUnavailable: the cluster's kinds, a forwarded one, an unreachable peer", () => {
  assert.ok(isUnavailable(new UnavailableError("x")));
  assert.ok(isUnavailable(named("NoQuorumError", "x")));
  assert.ok(isUnavailable(named("RpcError", "x", { remoteName: "ReplicaQuorumError" })));
  assert.ok(isUnavailable(named("RpcError", "x", { unreachable: true })));
  assert.ok(!isUnavailable(named("RpcError", "x", { remoteName: "WritesLostError" })));
  assert.ok(!isUnavailable(named("WritesLostError", "x")));
  assert.ok(!isUnavailable(new LeaseLostError("x")));
  assert.ok(!isUnavailable("a string"));
});
