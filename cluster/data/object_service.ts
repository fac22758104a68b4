/**
 * Volume objects on a storing node (a replica), with two guards:
 *
 * - Fencing (DESIGN.md invariant 3): every write carries the writer's lease epoch
 *   for the volume; the node remembers, durably, the highest epoch it has seen per
 *   volume and refuses writes with a lower one. A holder that was cut off and
 *   replaced can therefore never change the volume again, whatever it believes.
 * - Stamps: each copy of an object has a stamp (writer's epoch, version); the writer
 *   advances the version by one per change. A replica applies a change only on top
 *   of the version before it, so a replica that missed one answers "behind"
 *   instead of holding a mix; the writer then replaces its copy whole (`replace`,
 *   applied only when newer). Readers on other nodes read the copy with the
 *   highest stamp. Stamps are kept in memory and persisted per volume (`ov/UID`)
 *   at each flush, after the data is durable, so a persisted stamp never claims
 *   more than the disk holds.
 */
import type { NodeDisk } from "../../core/mod.ts";
import { ConflictError, isObjectName, VersionMismatchError } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import { type RpcCaller, RpcError, type RpcMessage, type RpcMethod } from "../transport/mod.ts";

/** Largest object a replica copies whole (a repair), and largest read. */
export const objectBytesMax = 32 * 1024 * 1024;
/** Most changes in one `object.changes` batch. */
export const changesBatchMax = 256;
/** Most bytes of data in one batch (one change may exceed it alone). */
const batchBytesMax = 16 * 1024 * 1024;
/** Batches in flight to one replica at once. */
const batchesInFlightMax = 2;
/** Most names one `object.stamps` call may ask about. */
export const stampNamesMax = 4096;

/** A write carried an epoch below one this node has seen for the volume. */
export class FencedError extends ConflictError {
  override name = "FencedError";
}

/** The fence of each volume on one node: highest epoch seen, kept in `fence/UID`. */
export class Fences {
  #engine: NodeDisk;
  #cache = new Map<string, { epoch: number; version: number }>();
  #locks = new KeyedMutex();

  constructor(engine: NodeDisk) {
    this.#engine = engine;
  }

  /**
   * Admits a write of `epoch` to volume `uid`: raises the fence durably when the
   * epoch is new, throws FencedError when it is older than the fence.
   */
  admit(uid: string, epoch: number): Promise<void> {
    return this.#locks.run(uid, async () => {
      const fence = await this.#load(uid);
      if (epoch < fence.epoch) {
        throw new FencedError(
          `Cannot write volume ${uid} at epoch ${epoch}: epoch ${fence.epoch} holds its lease`,
        );
      }
      if (epoch === fence.epoch) return;
      const key = `fence/${uid}`;
      try {
        const version = await this.#engine.putMeta(key, encode(epoch), fence.version);
        this.#cache.set(uid, { epoch, version });
      } catch (error) {
        if (error instanceof VersionMismatchError) this.#cache.delete(uid);
        throw error;
      }
    });
  }

  /** The highest epoch seen for `uid` (0 when none). */
  async epoch(uid: string): Promise<number> {
    return (await this.#load(uid)).epoch;
  }

  async #load(uid: string): Promise<{ epoch: number; version: number }> {
    const cached = this.#cache.get(uid);
    if (cached !== undefined) return cached;
    const entry = await this.#engine.getMeta(`fence/${uid}`);
    const fence = entry === null
      ? { epoch: 0, version: 0 }
      : { epoch: Number(new TextDecoder().decode(entry.value)), version: entry.version };
    this.#cache.set(uid, fence);
    return fence;
  }
}

/**
 * Where a copy of an object stands: the lease epoch of its last writer, then the
 * version (changes counted). A new lease holder continues the count under a
 * higher epoch, so its changes order after anything an older holder wrote.
 */
export type Stamp = readonly [epoch: number, version: number];

/** Negative when a is older than b. */
export function compareStamps(a: Stamp, b: Stamp): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

const unwritten: Stamp = [0, 0];
/** Objects one flush request may ask the stamps of (a volume's changed objects between flushes). */
const flushNamesMax = 65_536;

/** One change to an object, as the writer sends it to every replica. */
export interface ObjectChange {
  epoch: number;
  /** The version the change produces (with `epoch`, the copy's new stamp). */
  version: number;
  /**
   * With `replace`, `data` is the whole object at [epoch, version], applied only
   * when newer than the copy. Otherwise the change applies only on top of
   * `version - 1` (and an epoch not below the copy's).
   */
  replace?: boolean;
  /** Writes `data` at `offset`; with `truncate`, on an emptied object. */
  offset: number;
  data: Uint8Array;
  truncate?: boolean;
  /** Deletes the object (its version stays, as a tombstone). */
  remove?: boolean;
  /**
   * The writer's lease epoch when it is above `epoch`: a replacement that brings
   * a replica up to a version an earlier holder wrote keeps that version's stamp,
   * and storage admits it by the writer's epoch (fencing).
   */
  fence?: number;
}

/** What a replica answers to a change. */
export interface ChangeReply {
  applied: boolean;
  /** The copy's stamp after the change (or the one that made it refuse). */
  stamp: Stamp;
}

/** One replica of objects, reached in process or over RPC. */
export interface ObjectLink {
  readonly id: string;
  change(name: string, change: ObjectChange): Promise<ChangeReply>;
  /** Reads `length` bytes at `offset` (length -1: the whole object) with the copy's stamp. */
  read(name: string, offset: number, length: number): Promise<{ data: Uint8Array; stamp: Stamp }>;
  stamps(names: string[]): Promise<Stamp[]>;
  /**
   * Makes every applied change durable, versions included, and tells the
   * durable stamps of `names`: a replica that restarted and lost changes it had
   * taken says so here, instead of a flush that looks whole.
   */
  flush(names: string[]): Promise<Stamp[]>;
}

/** The objects this node stores, with their versions and fences. */
export class ObjectReplica implements ObjectLink {
  readonly id: string;
  readonly fences: Fences;
  #engine: NodeDisk;
  /** uid → (object name → stamp), loaded from `ov/UID` on first use. */
  #volumes = new Map<string, Promise<Map<string, Stamp>>>();
  /** uid → version of its `ov/UID` record. */
  #recordVersions = new Map<string, number>();
  #dirty = new Set<string>();
  #locks = new KeyedMutex();
  #persisting = new KeyedMutex();

  constructor(id: string, engine: NodeDisk) {
    this.id = id;
    this.#engine = engine;
    this.fences = new Fences(engine);
  }

  change(name: string, change: ObjectChange): Promise<ChangeReply> {
    checkObjectName(name);
    const { uid } = parseObjectName(name);
    if (change.offset + change.data.length > objectBytesMax) {
      throw new RangeError(`Cannot change object ${name}: it would exceed ${objectBytesMax} bytes`);
    }
    return this.#locks.run(name, async () => {
      await this.fences.admit(uid, Math.max(change.epoch, change.fence ?? 0));
      const stamps = await this.#stampsOf(uid);
      const current = stamps.get(name) ?? unwritten;
      const stamp: Stamp = [change.epoch, change.version];
      const applies = change.replace === true
        ? compareStamps(stamp, current) > 0
        : change.version === current[1] + 1 && change.epoch >= current[0];
      if (!applies) return { applied: false, stamp: current };
      if (change.remove === true) {
        await this.#engine.deleteObject(name);
      } else {
        const truncate = change.truncate === true || change.replace === true;
        await this.#engine.writeObject(name, change.offset, change.data, { truncate });
      }
      stamps.set(name, stamp);
      this.#dirty.add(uid);
      return { applied: true, stamp };
    });
  }

  async read(
    name: string,
    offset: number,
    length: number,
  ): Promise<{ data: Uint8Array; stamp: Stamp }> {
    checkObjectName(name);
    const { uid } = parseObjectName(name);
    return await this.#locks.run(name, async () => {
      const stamp = (await this.#stampsOf(uid)).get(name) ?? unwritten;
      if (length < 0) length = Math.max(0, (await this.#engine.objectSize(name)) - offset);
      if (length > objectBytesMax) {
        throw new RangeError(
          `Cannot read object ${name}: ${length} bytes exceed ${objectBytesMax}`,
        );
      }
      const data = new Uint8Array(length);
      await this.#engine.readObject(name, { offset, length }, data);
      return { data, stamp };
    });
  }

  async stamps(names: string[]): Promise<Stamp[]> {
    return await Promise.all(names.map(async (name) => {
      checkObjectName(name);
      return (await this.#stampsOf(parseObjectName(name).uid)).get(name) ?? unwritten;
    }));
  }

  async flush(names: string[] = []): Promise<Stamp[]> {
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    await this.#engine.flush();
    await Promise.all(dirty.map((uid) => this.#persist(uid)));
    return await this.stamps(names);
  }

  /**
   * Gives this node's copy of `name` up (healing hands it off to its replicas),
   * data and stamp together and only while its stamp is still `stamp`: a change
   * that arrived since the replicas were checked keeps the copy. Without its
   * stamp, a change from a writer that still counts this node a replica finds
   * it behind and replaces it whole, instead of being applied on top of data no
   * longer here. The stamp goes durably before the data. True when given up.
   */
  drop(name: string, stamp: Stamp): Promise<boolean> {
    checkObjectName(name);
    const { uid } = parseObjectName(name);
    return this.#locks.run(name, async () => {
      const stamps = await this.#stampsOf(uid);
      if (compareStamps(stamps.get(name) ?? unwritten, stamp) !== 0) return false;
      stamps.delete(name);
      this.#dirty.add(uid);
      await this.flush();
      await this.#engine.deleteObject(name);
      return true;
    });
  }

  /** Every object this node stores. */
  list(): AsyncIterable<string> {
    return this.#engine.listObjects();
  }

  #stampsOf(uid: string): Promise<Map<string, Stamp>> {
    let stamps = this.#volumes.get(uid);
    if (stamps === undefined) {
      stamps = (async () => {
        const entry = await this.#engine.getMeta(`ov/${uid}`);
        if (entry === null) return new Map<string, Stamp>();
        this.#recordVersions.set(uid, entry.version);
        const saved = JSON.parse(new TextDecoder().decode(entry.value)) as Record<string, Stamp>;
        return new Map(Object.entries(saved));
      })();
      this.#volumes.set(uid, stamps);
      stamps.catch(() => this.#volumes.delete(uid));
    }
    return stamps;
  }

  #persist(uid: string): Promise<void> {
    return this.#persisting.run(uid, async () => {
      const stamps = await this.#stampsOf(uid);
      const value = new TextEncoder().encode(JSON.stringify(Object.fromEntries(stamps)));
      const expected = this.#recordVersions.get(uid) ?? 0;
      this.#recordVersions.set(uid, await this.#engine.putMeta(`ov/${uid}`, value, expected));
    });
  }
}

/** The methods a node serves for the objects it stores. */
export function objectMethods(replica: ObjectReplica): Record<string, RpcMethod> {
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
      };
      const reply = await replica.change(objectNameOf(h.name), change);
      return { header: { applied: reply.applied, stamp: reply.stamp } };
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
        };
        at += length;
        return { name: objectNameOf(h.name), change };
      });
      const results = await Promise.allSettled(
        changes.map(({ name, change }) => replica.change(name, change)),
      );
      return {
        header: {
          results: results.map((result) =>
            result.status === "fulfilled"
              ? { applied: result.value.applied, stamp: result.value.stamp }
              : { error: (result.reason as Error).message, name: (result.reason as Error).name }
          ),
        },
      };
    },
    "object.read": async (request) => {
      const h = request.header;
      const length = h.length === -1 ? -1 : natural(h.length, "length");
      const { data, stamp } = await replica.read(
        objectNameOf(h.name),
        natural(h.offset, "offset"),
        length,
      );
      return { header: { stamp }, data };
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
  const call = (method: string, message: RpcMessage) => rpc.call(address, method, message);
  const batches = new ChangeBatcher(call);
  return {
    id,
    change: (name, change) => batches.change(name, change),
    async read(name, offset, length) {
      const reply = await call("object.read", { header: { name, offset, length } });
      const data = reply.data ?? new Uint8Array();
      if (length >= 0 && data.length !== length) {
        throw new RangeError(
          `object.read on ${address} returned ${data.length} of ${length} bytes`,
        );
      }
      return { data, stamp: stampOf(reply.header.stamp) };
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
  #call: (method: string, message: RpcMessage) => Promise<RpcMessage>;
  #pending: {
    name: string;
    change: ObjectChange;
    done: PromiseWithResolvers<ChangeReply>;
  }[] = [];
  #inFlight = 0;

  constructor(call: (method: string, message: RpcMessage) => Promise<RpcMessage>) {
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
    const data = new Uint8Array(batch.reduce((sum, { change }) => sum + change.data.length, 0));
    let at = 0;
    const changes = batch.map(({ name, change }) => {
      const { data: bytes, ...rest } = change;
      data.set(bytes, at);
      at += bytes.length;
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
      } else done.resolve({ applied: result.applied === true, stamp: stampOf(result.stamp) });
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

function checkObjectName(name: string): void {
  if (!isObjectName(name)) throw new TypeError(`bad object name ${JSON.stringify(name)}`);
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

function encode(epoch: number): Uint8Array {
  return new TextEncoder().encode(String(epoch));
}

/** True when `error` is storage refusing an older epoch, here or on a peer. */
export function isFenced(error: unknown): boolean {
  return error instanceof FencedError ||
    (error instanceof RpcError && error.remoteName === "FencedError");
}
