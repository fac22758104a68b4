/**
 * Volume objects over RPC: the methods a storing node serves for its replica
 * (`object.*`), and the ObjectLink a writer uses to reach another node's
 * replica, which batches changes while a batch is in flight.
 */
import { BufferPool, isObjectName } from "../../core/mod.ts";
import {
  type CallOptions,
  type OutgoingMessage,
  type RpcCaller,
  RpcError,
  type RpcMessage,
  type RpcMethod,
} from "../transport/mod.ts";
import {
  type ChangeReply,
  objectBytesMax,
  type ObjectChange,
  type ObjectLink,
  type Stamp,
} from "./object_link.ts";
import type { ObjectReplica } from "./object_service.ts";

/** Most changes in one `object.changes` batch. */
export const changesBatchMax = 256;
/** Reads at least this long are answered from reused buffers (shorter ones go inline in their frame). */
const readPooledBytesMin = 64 * 1024;
/** Bytes of read buffers a node keeps for reuse. */
const readPoolBytesMax = 16 * 1024 * 1024;
/** Most bytes of data in one batch (one change may exceed it alone). */
const batchBytesMax = 16 * 1024 * 1024;
/** Batches in flight to one replica at once. */
const batchesInFlightMax = 2;
/** Most names one `object.stamps` call may ask about. */
export const stampNamesMax = 4096;
/** Objects one flush request may ask the stamps of (a volume's changed objects between flushes). */
const flushNamesMax = 65_536;

/** The methods a node serves for the objects it stores. */
/**
 * The methods of objectMethods() that keep no reference to a call's data once
 * they settled (a change is written to its file or copied into the journal
 * before it is answered): the link server may read their data into reused buffers.
 */
export const objectMethodsPooled: ReadonlySet<string> = new Set([
  "object.change",
  "object.changes",
]);

export function objectMethods(replica: ObjectReplica): Record<string, RpcMethod> {
  const reads = new BufferPool(readPoolBytesMax, objectBytesMax);
  const placementOf = (h: Record<string, unknown>) =>
    h.placement === undefined ? undefined : natural(h.placement, "placement");
  const answer = (reply: ChangeReply) =>
    reply.moved === true
      ? { applied: reply.applied, stamp: reply.stamp, moved: true }
      : { applied: reply.applied, stamp: reply.stamp };
  return {
    "object.change": async (request) => {
      const h = request.header;
      const change: ObjectChange = {
        epoch: positive(h.epoch, "epoch"),
        version: positive(h.version, "version"),
        offset: natural(h.offset, "offset"),
        data: request.data ?? new Uint8Array(), // the request's own buffer: no copy
        replace: h.replace === true,
        truncate: h.truncate === true,
        remove: h.remove === true,
        fence: h.fence === undefined ? undefined : positive(h.fence, "fence"),
        heal: h.heal === true,
        placement: placementOf(h),
      };
      const reply = await replica.change(objectNameOf(h.name), change, { fromPeer: true });
      return { header: answer(reply) };
    },
    "object.changes": async (request) => {
      // A batch from one writer: changes of distinct objects, applied at once,
      // each answered on its own (one may be refused while the others apply).
      const list = request.header.changes;
      if (!Array.isArray(list) || list.length > changesBatchMax) throw new TypeError("bad changes");
      const data = request.data ?? new Uint8Array();
      let at = 0;
      const changes = list.map((h: Record<string, unknown>) => {
        const length = natural(h.length, "length");
        if (at + length > data.length) throw new RangeError("changes overrun their data");
        const change: ObjectChange = {
          epoch: positive(h.epoch, "epoch"),
          version: positive(h.version, "version"),
          offset: natural(h.offset, "offset"),
          data: data.subarray(at, at + length),
          replace: h.replace === true,
          truncate: h.truncate === true,
          remove: h.remove === true,
          fence: h.fence === undefined ? undefined : positive(h.fence, "fence"),
          placement: placementOf(h),
        };
        at += length;
        return { name: objectNameOf(h.name), change };
      });
      const results = await Promise.allSettled(
        changes.map(({ name, change }) => replica.change(name, change, { fromPeer: true })),
      );
      return {
        header: {
          results: results.map((result) =>
            result.status === "fulfilled"
              ? answer(result.value)
              : { error: (result.reason as Error).message, name: (result.reason as Error).name }
          ),
        },
      };
    },
    "object.read": async (request) => {
      const h = request.header;
      const length = h.length === -1 ? -1 : natural(h.length, "length");
      // Into a reused buffer when the length is known, back in the pool once sent.
      const into = length >= readPooledBytesMin && length <= objectBytesMax
        ? reads.acquire(length)
        : undefined;
      const { data, stamp } = await replica.read(
        objectNameOf(h.name),
        natural(h.offset, "offset"),
        length,
        into,
      );
      return {
        header: { stamp },
        data,
        sent: data === into ? () => reads.release(data) : undefined,
      };
    },
    "object.stamps": async (request) => {
      const names = request.header.names;
      if (!Array.isArray(names) || names.length > stampNamesMax) {
        throw new TypeError("bad names");
      }
      return { header: { stamps: await replica.stamps(names.map(objectNameOf)) } };
    },
    "object.fence": async (request) => {
      const uid = request.header.uid;
      if (typeof uid !== "string" || !/^[0-9a-f]{32}$/.test(uid)) throw new TypeError("bad uid");
      await replica.fences.admit(uid, positive(request.header.epoch, "epoch"));
      return { header: {} };
    },
    "object.list": async () => {
      const names: string[] = [];
      for await (const name of replica.list()) names.push(name);
      return { header: { names } };
    },
    "object.flush": async (request) => {
      const names = request.header.names ?? [];
      if (!Array.isArray(names) || names.length > flushNamesMax) {
        throw new TypeError("object.flush: bad names");
      }
      return { header: { stamps: await replica.flush(names.map(String)) } };
    },
  };
}

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

function objectNameOf(value: unknown): string {
  if (typeof value !== "string" || !isObjectName(value)) {
    throw new TypeError(`bad object name ${JSON.stringify(value)}`);
  }
  return value;
}

function positive(value: unknown, what: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1) throw new TypeError(`bad ${what}`);
  return value as number;
}

function natural(value: unknown, what: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw new TypeError(`bad ${what}`);
  return value as number;
}
