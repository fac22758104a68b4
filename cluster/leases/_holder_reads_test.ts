/**
 * Goal: a flush through a node that does not hold the lease gets the holder's
 * answer, even when the holder's flush waits a call's timeout at several steps
 * (a replica that does not answer, then a look over the members for its
 * object): only that answer says whether the writes were lost, and the holder
 * gives it once. Method: HolderReads over stubs; the RPC stub plays a holder
 * whose flush takes 2.5 calls' timeouts and fails with the loss, and times out
 * a call that waits less (seed 1703790 of the data-path simulation).
 */
import assert from "node:assert/strict";
import type { Clock, Store } from "../../core/mod.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import { type RpcCaller, RpcError, rpcTimeoutMsDefault } from "../transport/mod.ts";
import type { LeaseCounters } from "./leases.ts";
import { HolderReads } from "./_holder_reads.ts";

Deno.test("a flush forwarded to the holder waits for the holder's answer past one call's timeout", async () => {
  const holderFlushMs = 2.5 * rpcTimeoutMsDefault;
  const calls: string[] = [];
  const rpc: RpcCaller = {
    call(address, method, _message, timeoutMs = rpcTimeoutMsDefault) {
      calls.push(`${method} at ${address}`);
      if (timeoutMs < holderFlushMs) {
        return Promise.reject(
          new RpcError(`Cannot call ${method} on ${address}: timed out`, true),
        );
      }
      return Promise.reject(
        new RpcError(`${method} on ${address} failed: writes were lost`, false, {
          remoteName: "WritesLostError",
        }),
      );
    },
  };
  const store = { loadVolume: () => Promise.resolve({ lease: { holder: "h" } }) };
  const engine = {
    selfId: "me",
    member: (id: string) => ({ id, address: "h:1", status: "alive" }),
  };
  const reads = new HolderReads({
    store: () => store as unknown as Store,
    engine: engine as unknown as ClusterEngine,
    rpc,
    counters: {} as LeaseCounters,
    holds: () => false,
    confirm: () => Promise.resolve(),
    readElsewhere: () => {},
    clock: {} as Clock,
    validMs: 1000,
  });
  const error = await reads.flush("vm1").then(() => null, (error) => error);
  assert.deepEqual(calls, ["volume.flush at h:1"]);
  assert.ok(error instanceof RpcError, "the flush must fail");
  assert.equal(error.unreachable, false, `the holder's answer, not a timeout: ${error.message}`);
  assert.equal(error.remoteName, "WritesLostError");
});
