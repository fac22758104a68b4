/**
 * Volume objects over RPC: the methods a storing node serves for its replica
 * (`object.*`); object_rpc_link.ts is the ObjectLink a writer reaches them by.
 */
import { BufferPool, isObjectName } from "../../core/mod.ts";
import type { RpcMessage, RpcMethod } from "../transport/mod.ts";
import { type ChangeReply, objectBytesMax, type ObjectChange } from "./object_link.ts";
import type { ObjectReplica } from "./object_service.ts";

/** Most changes in one `object.changes` batch. */
export const changesBatchMax = 256;
/** Bytes of read buffers a node keeps for reuse. */
const readPoolBytesMax = 16 * 1024 * 1024;
/** Most names one `object.stamps` call may ask about. */
export const stampNamesMax = 4096;
/** Objects one flush request may ask the stamps of (a volume's changed objects between flushes). */
const flushNamesMax = 65_536;

/** The methods a node serves for the objects it stores. */
/**
 * The methods of objectMethods() that keep no reference to a call's data once
 * they settled, or say until when they do (RpcMessage.keep: a large change is
 * answered once its write is under way): the link server may read their data
 * into reused buffers.
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
      const reply = await replica.change(objectNameOf(h.name), change, {
        fromPeer: true,
        keep: keepOf(request),
      });
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
        changes.map(({ name, change }) =>
          replica.change(name, change, { fromPeer: true, keep: keepOf(request) })
        ),
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
      // Into a reused buffer when the length is known (a new one costs more than a
      // 4 KiB read), back in the pool once sent.
      const into = length > 0 && length <= objectBytesMax ? reads.acquire(length) : undefined;
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
    "object.short": async (request) => {
      const names = request.header.names;
      if (!Array.isArray(names) || names.length > stampNamesMax) {
        throw new TypeError("object.short: bad names");
      }
      await replica.short(names.map(objectNameOf));
      return { header: {} };
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

/** How long a change may keep using the call's data: as its transport says, else its own. */
function keepOf(request: RpcMessage): (until: Promise<unknown>) => void {
  return request.keep ?? (() => {});
}
