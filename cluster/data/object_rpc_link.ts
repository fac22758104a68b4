/**
 * The ObjectLink a writer uses to reach another node's object replica over
 * RPC (the methods of object_rpc.ts), which batches changes while a batch is
 * in flight.
 */
import {
  type CallOptions,
  type OutgoingMessage,
  type RpcCaller,
  RpcError,
  type RpcMessage,
} from "../transport/mod.ts";
import type { ChangeReply, ObjectChange, ObjectLink, Stamp } from "./object_link.ts";
import { changesBatchMax } from "./object_rpc.ts";

/** Most bytes of data in one batch (one change may exceed it alone). */
const batchBytesMax = 16 * 1024 * 1024;
/** Batches in flight to one replica at once. */
const batchesInFlightMax = 2;

/** An ObjectLink to the replica of the node at `address`. */
export function rpcObjectLink(rpc: RpcCaller, id: string, address: string): ObjectLink {
  const call = (method: string, message: OutgoingMessage, options?: CallOptions) =>
    rpc.call(address, method, message, undefined, options);
  const batches = new ChangeBatcher(call);
  return {
    id,
    change: (name, change) => batches.change(name, change),
    async read(name, offset, length, into) {
      // With `into`, the caller copies the data out and releases it.
      const options = { pooledReply: into !== undefined };
      const reply = await call("object.read", { header: { name, offset, length } }, options);
      const data = reply.data ?? new Uint8Array();
      if (length >= 0 && data.length !== length) {
        reply.release?.();
        throw new RangeError(
          `object.read on ${address} returned ${data.length} of ${length} bytes`,
        );
      }
      return { data, stamp: stampOf(reply.header.stamp), release: reply.release };
    },
    async stamps(names) {
      const reply = await call("object.stamps", { header: { names } });
      const stamps = reply.header.stamps;
      if (!Array.isArray(stamps) || stamps.length !== names.length) {
        throw new TypeError(`object.stamps on ${address}: malformed reply`);
      }
      return stamps.map(stampOf);
    },
    async flush(names) {
      const reply = await call("object.flush", { header: { names } });
      const stamps = reply.header.stamps;
      if (!Array.isArray(stamps) || stamps.length !== names.length) {
        throw new TypeError(`object.flush on ${address}: malformed reply`);
      }
      return stamps.map(stampOf);
    },
    async short(names) {
      await call("object.short", { header: { names } });
    },
  };
}

/**
 * Sends the changes for one replica in batches: a change goes at once when no
 * batch is in flight, otherwise it waits for the next batch with whatever else
 * arrived meanwhile. Low load pays no delay; high load pays one request per
 * batch instead of one per change.
 */
class ChangeBatcher {
  #call: (method: string, message: OutgoingMessage) => Promise<RpcMessage>;
  #pending: {
    name: string;
    change: ObjectChange;
    done: PromiseWithResolvers<ChangeReply>;
  }[] = [];
  #inFlight = 0;

  constructor(call: (method: string, message: OutgoingMessage) => Promise<RpcMessage>) {
    this.#call = call;
  }

  change(name: string, change: ObjectChange): Promise<ChangeReply> {
    const done = Promise.withResolvers<ChangeReply>();
    this.#pending.push({ name, change, done });
    this.#send();
    return done.promise;
  }

  #send(): void {
    while (this.#inFlight < batchesInFlightMax && this.#pending.length > 0) {
      const batch = [];
      let bytes = 0;
      while (
        this.#pending.length > 0 && batch.length < changesBatchMax &&
        (batch.length === 0 || bytes + this.#pending[0].change.data.length <= batchBytesMax)
      ) {
        const next = this.#pending.shift()!;
        bytes += next.change.data.length;
        batch.push(next);
      }
      this.#inFlight++;
      this.#post(batch).finally(() => {
        this.#inFlight--;
        this.#send();
      });
    }
  }

  async #post(
    batch: { name: string; change: ObjectChange; done: PromiseWithResolvers<ChangeReply> }[],
  ): Promise<void> {
    // Each change's bytes go out from its own buffer (the link copies none of
    // them; the writer keeps them until the call settled).
    const data = batch.map(({ change }) => change.data);
    const changes = batch.map(({ name, change }) => {
      const { data: bytes, ...rest } = change;
      return { name, ...rest, length: bytes.length };
    });
    let results: unknown;
    try {
      results = (await this.#call("object.changes", { header: { changes }, data })).header.results;
      if (!Array.isArray(results) || results.length !== batch.length) {
        throw new TypeError("object.changes: malformed reply");
      }
    } catch (error) {
      for (const { done } of batch) done.reject(error);
      return;
    }
    batch.forEach(({ done }, i) => {
      const result = (results as Record<string, unknown>[])[i];
      if (typeof result.error === "string") {
        done.reject(
          new RpcError(`object.changes: ${result.error}`, false, {
            remoteName: String(result.name),
          }),
        );
      } else {
        done.resolve({
          applied: result.applied === true,
          stamp: stampOf(result.stamp),
          moved: result.moved === true,
        });
      }
    });
  }
}

function stampOf(value: unknown): Stamp {
  if (
    !Array.isArray(value) || value.length !== 2 || !value.every((n) => Number.isSafeInteger(n))
  ) {
    throw new TypeError(`bad stamp ${JSON.stringify(value)}`);
  }
  return [value[0], value[1]];
}
