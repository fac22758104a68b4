/**
 * The RADOS engine: Atoll's blocks, objects and metadata in a Ceph pool,
 * through librados. Three RADOS namespaces of the pool (`NS-blocks`,
 * `NS-objects`, `NS-meta`; NS is `atoll` unless told) keep them apart from
 * each other and from whatever else uses the pool:
 *
 * - a block is one object named by its SHA-256, written whole and once, and
 *   stamped with when it was last stored (_block_writes.ts);
 * - a volume object is one object named `UID.GENERATION.INDEX`, written at
 *   offsets; with fencing (several nodes on the pool), every write carries the
 *   writer's lease epoch, checked in the same operation (_fenced_writes.ts);
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
import { errno, isRadosError } from "./_errors.ts";
import { Connection, type ConnectionOptions } from "./_connection.ts";
import type { IoContext } from "./_ops.ts";
import { deleteBlockStoredBefore, putBlock, refreshBlock } from "./_block_writes.ts";
import { FencedWrites } from "./_fenced_writes.ts";
import { MetaShards } from "./_meta_shards.ts";
import { logger } from "../log/mod.ts";

const log = logger("rados");

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
  /** Volume object writes, and the objects known stamped with this client's epoch. */
  #writes = new FencedWrites();
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
    return this.#guard(() => putBlock(this.#blocks, hash, data));
  }

  /**
   * Removes a block unless it was stored (or stored again) after `cutoffMs`
   * (wall clock), in one operation; true when it is gone.
   */
  deleteBlockStoredBefore(hash: string, cutoffMs: number): Promise<boolean> {
    return this.#guard(() => deleteBlockStoredBefore(this.#blocks, hash, cutoffMs));
  }

  /** Makes block `hash` young again (stored now), creating nothing; false when it is gone. */
  refreshBlock(hash: string): Promise<boolean> {
    return this.#guard(() => refreshBlock(this.#blocks, hash));
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
    options: { truncate?: boolean; existing?: boolean; epoch?: number } = {},
  ): Promise<void> {
    return this.#guard(async () => {
      const epoch = this.#fence(name, options.epoch);
      await this.#writes.write(this.#objects, name, offset, data, options, epoch);
    });
  }

  /**
   * Removes object `name`; with `epoch` (a volume instance's, Engine.writeObject)
   * and fencing, fenced as its writes are. Without `epoch` (garbage collection,
   * of objects no map names) it just goes.
   */
  deleteObject(name: string, options: { epoch?: number } = {}): Promise<void> {
    this.#writes.forget(name);
    return this.#guard(async () => {
      const epoch = options.epoch === undefined ? null : this.#fence(name, options.epoch);
      if (epoch === null) return await this.#connection.remove(this.#objects, name);
      await this.#writes.remove(this.#objects, name, epoch);
    });
  }

  /**
   * The epoch a change of object `name` is fenced with (null: no fencing), or
   * LeaseLostError when this node holds no lease on its volume, or holds
   * another than `instanceEpoch`, the epoch of the volume instance changing it
   * (one dropped when its lease moved away, still writing after this node took
   * the lease again, must not pass the fence under the new epoch).
   */
  #fence(name: string, instanceEpoch: number | undefined): number | null {
    const fenceOf = this.#options.fenceOf;
    if (fenceOf === undefined) return null;
    const epoch = fenceOf(name.slice(0, name.indexOf(".")));
    if (epoch === null) {
      throw new LeaseLostError(`Cannot write object ${name}: this node holds no write lease on it`);
    }
    if (instanceEpoch !== undefined && instanceEpoch !== epoch) {
      throw new LeaseLostError(
        `Cannot write object ${name}: written by the volume as it was under lease epoch ` +
          `${instanceEpoch}, and this node holds epoch ${epoch} now`,
      );
    }
    return epoch;
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
