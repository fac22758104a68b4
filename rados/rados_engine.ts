/**
 * The RADOS engine: Atoll's blocks, objects and metadata in a Ceph pool,
 * through librados. Three RADOS namespaces of the pool (`NS-blocks`,
 * `NS-objects`, `NS-meta`; NS is `atoll` unless told) keep them apart from
 * each other and from whatever else uses the pool:
 *
 * - a block is one object named by its SHA-256, written whole and once
 *   (`create(exclusive)` and `write_full` in one operation: visible only whole;
 *   a second put gets EEXIST, so exactly one of racing puts is new);
 * - a volume object is one object named `UID.GENERATION.INDEX`, written at
 *   offsets; with fencing (several nodes on the pool), every write carries, in
 *   the same operation, `cmpxattr(atoll.epoch <= mine)` and `setxattr(mine)`:
 *   once a holder at a newer epoch wrote an object, an older one cannot;
 * - metadata are omap entries of shard objects, changed by compare-and-set in
 *   one operation (_meta_shards.ts).
 *
 * RADOS acknowledges a write once every replica has it durably, so `flush()`
 * has nothing left to do.
 */
import {
  type ByteRange,
  CorruptionError,
  type Engine,
  isBlockName,
  isObjectName,
  LeaseLostError,
  type MetaEntry,
} from "../core/mod.ts";
import { cmp } from "./_librados.ts";
import { errno, isRadosError } from "./_errors.ts";
import { Connection, type ConnectionOptions } from "./_connection.ts";
import { type IoContext, WriteOp } from "./_ops.ts";
import { MetaShards } from "./_meta_shards.ts";
import { logger } from "../log/mod.ts";

const log = logger("rados");

/** Objects remembered as stamped with this client's epoch. */
const stampedObjectsMax = 65_536;
/** The xattr of a volume object that names the epoch of its last writer. */
const epochXattr = "atoll.epoch";
/**
 * The xattr of a block that says when it was last stored (milliseconds since
 * the epoch, fixed width): stored again by a dedup hit, it is young again, and
 * garbage collection removes only blocks older than its cutoff (_gc_policy.ts).
 */
const storedXattr = "atoll.stored";

/** Options of {@linkcode RadosEngine.open}. */
export interface RadosEngineOptions extends ConnectionOptions {
  /** Prefix of the RADOS namespaces Atoll uses in the pool (default `atoll`). */
  namespace?: string;
  /**
   * The lease epoch this node writes volume `uid`'s objects under, or null when
   * it holds no lease on it (its writes are then refused). Unset: nothing is
   * fenced (one node alone on the namespace, or the contract tests).
   */
  fenceOf?: (uid: string) => number | null;
  /**
   * Called once when the cluster blocklisted this node's client (another node
   * took a lease from it by force): every lease it held is gone. The engine
   * reconnects as a new client for what comes next.
   */
  onBlocklisted?: () => void;
}

/** Engine over one namespace of a Ceph pool. */
export class RadosEngine implements Engine {
  readonly namespace: string;
  #options: RadosEngineOptions;
  #connection: Connection;
  #blocks!: IoContext;
  #objects!: IoContext;
  #meta!: MetaShards;
  #metaIo!: IoContext;
  #reconnecting: Promise<void> | null = null;
  /**
   * Objects this client stamped with its epoch (name → epoch): their xattr says
   * so already, so later writes only compare it (an xattr set again costs the
   * OSD a metadata update per write). Forgotten whole when it grows past
   * stampedObjectsMax.
   */
  #stamped = new Map<string, string>();
  #closed = false;

  private constructor(options: RadosEngineOptions, connection: Connection) {
    this.#options = options;
    this.namespace = options.namespace ?? "atoll";
    this.#connection = connection;
  }

  /** Connects to the pool; throws one clear line when librados or the pool is missing. */
  static async open(options: RadosEngineOptions): Promise<RadosEngine> {
    const engine = new RadosEngine(options, await Connection.connect(options));
    await engine.#openContexts();
    return engine;
  }

  async #openContexts(): Promise<void> {
    this.#blocks = await this.#connection.context(`${this.namespace}-blocks`);
    this.#objects = await this.#connection.context(`${this.namespace}-objects`);
    this.#metaIo = await this.#connection.context(`${this.namespace}-meta`);
    this.#meta = new MetaShards(this.#metaIo);
  }

  /** The connection (the leases watch, notify and blocklist through it). */
  get connection(): Connection {
    return this.#connection;
  }

  /** The io context of the metadata namespace (the leases' watch objects live there). */
  get metaContext(): IoContext {
    return this.#metaIo;
  }

  hasBlock(hash: string): Promise<boolean> {
    return this.#guard(async () => await this.#connection.size(this.#blocks, hash) !== null);
  }

  putBlock(hash: string, data: Uint8Array): Promise<boolean> {
    return this.#guard(async () => {
      for (;;) {
        const now = timeText(Date.now());
        try {
          await new WriteOp().create(true).setXattr(storedXattr, now).writeFull(data)
            .operate(this.#blocks, hash);
          return true;
        } catch (error) {
          if (!isRadosError(error, errno.EEXIST)) throw error;
        }
        try {
          // Stored again: young again, so that no collection takes it from under this put.
          await new WriteOp().setXattr(storedXattr, now).operate(this.#blocks, hash);
          return false;
        } catch (error) {
          if (!isRadosError(error, errno.ENOENT)) throw error; // collected meanwhile: store it
        }
      }
    });
  }

  /**
   * Removes a block unless it was stored (or stored again) after `cutoffMs`
   * (wall clock), in one operation; true when it is gone.
   */
  deleteBlockStoredBefore(hash: string, cutoffMs: number): Promise<boolean> {
    return this.#guard(async () => {
      try {
        await new WriteOp().compareXattr(storedXattr, cmp.gte, timeText(cutoffMs)).remove()
          .operate(this.#blocks, hash);
        return true;
      } catch (error) {
        if (isRadosError(error, errno.ENOENT)) return true;
        if (isRadosError(error, errno.ECANCELED)) return false;
        throw error;
      }
    });
  }

  readBlock(hash: string, range: ByteRange, into: Uint8Array): Promise<void> {
    return this.#guard(async () => {
      const got = await this.#connection.read(this.#blocks, hash, into, range.offset);
      if (got !== range.length) {
        throw new CorruptionError(
          `Cannot read block ${hash}: ${range.length} bytes at ${range.offset} asked, ${got} stored`,
        );
      }
    });
  }

  deleteBlock(hash: string): Promise<void> {
    return this.#guard(() => this.#connection.remove(this.#blocks, hash));
  }

  async *listBlocks(): AsyncIterable<string> {
    for await (const name of this.#connection.list(this.#blocks)) {
      if (isBlockName(name)) yield name;
    }
  }

  readObject(
    name: string,
    range: ByteRange,
    into: Uint8Array,
    options: { existing?: boolean } = {},
  ): Promise<void> {
    return this.#guard(async () => {
      const got = await this.#connection.read(this.#objects, name, into, range.offset);
      into.fill(0, got);
      if (
        got === 0 && options.existing && await this.#connection.size(this.#objects, name) === null
      ) {
        throw new CorruptionError(
          `Cannot read object ${name}: a map names it, but it is not stored`,
        );
      }
    });
  }

  writeObject(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; existing?: boolean } = {},
  ): Promise<void> {
    return this.#guard(async () => {
      const fenceOf = this.#options.fenceOf;
      if (fenceOf === undefined) return await this.#write(name, offset, data, options, null);
      const uid = name.slice(0, name.indexOf("."));
      const epoch = fenceOf(uid);
      if (epoch === null) {
        throw new LeaseLostError(
          `Cannot write object ${name}: this node holds no write lease on it`,
        );
      }
      await this.#write(name, offset, data, options, epochText(epoch));
    });
  }

  /**
   * One write operation: the fence check (when `epoch`), the truncation, the
   * data. A missing object is created exclusively in a second operation (a
   * comparison cannot run on an object that does not exist); one that appears
   * meanwhile takes the first form again.
   */
  async #write(
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; existing?: boolean },
    epoch: string | null,
  ): Promise<void> {
    for (let attempt = 0;; attempt++) {
      const op = new WriteOp();
      if (epoch !== null) {
        op.compareXattr(epochXattr, cmp.gte, epoch);
        if (this.#stamped.get(name) !== epoch) op.setXattr(epochXattr, epoch);
      }
      if (options.truncate) op.truncate(0);
      try {
        await op.write(data, offset).operate(this.#objects, name);
        this.#stamp(name, epoch);
        return;
      } catch (error) {
        if (isRadosError(error, errno.ECANCELED)) {
          throw new LeaseLostError(
            `Cannot write object ${name}: a holder of a newer write lease wrote it`,
          );
        }
        if (!isRadosError(error, errno.ENOENT) || epoch === null || attempt > 0) throw error;
      }
      if (options.existing) {
        throw new CorruptionError(`Cannot write object ${name} in place: it is not stored`);
      }
      try {
        await new WriteOp().create(true).setXattr(epochXattr, epoch).write(data, offset)
          .operate(this.#objects, name);
        this.#stamp(name, epoch);
        return;
      } catch (error) {
        if (!isRadosError(error, errno.EEXIST)) throw error;
      }
    }
  }

  #stamp(name: string, epoch: string | null): void {
    if (epoch === null) return;
    if (this.#stamped.size >= stampedObjectsMax) this.#stamped.clear();
    this.#stamped.set(name, epoch);
  }

  deleteObject(name: string): Promise<void> {
    this.#stamped.delete(name);
    return this.#guard(() => this.#connection.remove(this.#objects, name));
  }

  async *listObjects(): AsyncIterable<string> {
    for await (const name of this.#connection.list(this.#objects)) {
      if (isObjectName(name)) yield name;
    }
  }

  getMeta(key: string): Promise<MetaEntry | null> {
    return this.#guard(() => this.#meta.get(key));
  }

  /** The version of `key` (0 when missing), without its value. */
  metaVersion(key: string): Promise<number> {
    return this.#guard(() => this.#meta.version(key));
  }

  putMeta(key: string, value: Uint8Array, expectedVersion: number): Promise<number> {
    return this.#guard(() => this.#meta.put(key, value, expectedVersion));
  }

  deleteMeta(key: string, expectedVersion: number): Promise<void> {
    return this.#guard(() => this.#meta.delete(key, expectedVersion));
  }

  listMeta(prefix: string): Promise<string[]> {
    return this.#guard(() => this.#meta.list(prefix));
  }

  /** Nothing to do: RADOS acknowledged every write once all its replicas had it durably. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#reconnecting;
    await this.#connection.close();
  }

  /**
   * Runs `fn`; when the cluster refuses this client as blocklisted, that is a
   * lost lease (LeaseLostError), and the engine becomes a new client.
   */
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    await this.#reconnecting;
    const connection = this.#connection;
    try {
      return await fn();
    } catch (error) {
      if (!isRadosError(error, errno.ESHUTDOWN)) throw error;
      if (connection === this.#connection && !this.#closed) this.#reconnect();
      throw new LeaseLostError(
        "Cannot use RADOS: another node took a write lease from this one and blocklisted its " +
          "client (every lease it held is gone)",
        { cause: error },
      );
    }
  }

  #reconnect(): void {
    log.warn("the cluster blocklisted client {address}: its leases are gone; reconnecting", {
      address: this.#connection.address,
    });
    this.#options.onBlocklisted?.();
    const old = this.#connection;
    this.#reconnecting = (async () => {
      for (;;) {
        try {
          this.#connection = await Connection.connect(this.#options);
          await this.#openContexts();
          break;
        } catch (error) {
          log.error("cannot reconnect to Ceph: {error}", { error: String(error) });
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
      await old.close().catch(() => {});
      this.#reconnecting = null;
    })();
  }
}

/** A wall-clock time as the stored xattr holds it: fixed width, so strings compare as numbers. */
function timeText(ms: number): string {
  return String(Math.floor(ms)).padStart(16, "0");
}

/** An epoch as the fence xattr holds it: fixed width, so strings compare as numbers. */
function epochText(epoch: number): string {
  return String(epoch).padStart(16, "0");
}
