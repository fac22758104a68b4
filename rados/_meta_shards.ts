/**
 * Metadata on RADOS: versioned values in the omap (RADOS' per-object sorted
 * key-value store) of a few shard objects. A key `K` lives in shard
 * `meta.NN` (NN from a hash of K) as two omap entries: `v/K`, its version in
 * decimal, and `d/K`, its value. A compare-and-set is one write operation on
 * the shard: `omap_cmp(v/K == expected)` and `omap_set(v/K, d/K)` together, so
 * the OSD applies both or neither ("must not exist" compares with the empty
 * string, which a missing key equals). Listing asks every shard for the `v/`
 * keys under a prefix, which the OSD seeks to (omap_get_vals2's filter).
 */
import { createHash } from "node:crypto";
import { type MetaEntry, VersionMismatchError } from "../core/mod.ts";
import { cmp } from "./_librados.ts";
import { errno, isRadosError } from "./_errors.ts";
import { type IoContext, ReadOp, WriteOp } from "./_ops.ts";

/** Shard objects of the metadata: spreads compare-and-sets over that many PGs. */
export const metaShards = 16;
/**
 * Largest metadata value on RADOS. Records are far smaller (recordBytesMax);
 * maps written whole before maps had pages (up to 560 MiB) are not stored here.
 */
export const radosMetaValueBytesMax = 4 * 1024 * 1024;
/** Keys asked of one shard per listing request. */
const listPageKeys = 1000;

const decoder = new TextDecoder();

/** The metadata of one namespace. */
export class MetaShards {
  #io: IoContext;

  constructor(io: IoContext) {
    this.#io = io;
  }

  /** The shard object that holds `key`. */
  static shardOf(key: string): string {
    const digest = createHash("sha256").update(key).digest();
    return `meta.${String(digest[0] % metaShards).padStart(2, "0")}`;
  }

  async get(key: string): Promise<MetaEntry | null> {
    let found: Map<string, Uint8Array> = new Map();
    try {
      await new ReadOp().omapByKeys([`v/${key}`, `d/${key}`], (entries) => found = entries)
        .operate(this.#io, MetaShards.shardOf(key));
    } catch (error) {
      if (isRadosError(error, errno.ENOENT)) return null;
      throw error;
    }
    const version = found.get(`v/${key}`);
    if (version === undefined) return null;
    return {
      version: Number(decoder.decode(version)),
      value: found.get(`d/${key}`) ?? new Uint8Array(),
    };
  }

  /** The version of `key` alone (0 when missing). */
  async version(key: string): Promise<number> {
    let found: Map<string, Uint8Array> = new Map();
    try {
      await new ReadOp().omapByKeys([`v/${key}`], (entries) => found = entries)
        .operate(this.#io, MetaShards.shardOf(key));
    } catch (error) {
      if (isRadosError(error, errno.ENOENT)) return 0;
      throw error;
    }
    const version = found.get(`v/${key}`);
    return version === undefined ? 0 : Number(decoder.decode(version));
  }

  async put(key: string, value: Uint8Array, expectedVersion: number): Promise<number> {
    if (value.length > radosMetaValueBytesMax) {
      throw new RangeError(
        `Cannot store metadata ${key} of ${value.length} bytes: over ${radosMetaValueBytesMax} on RADOS`,
      );
    }
    const version = expectedVersion + 1;
    const op = new WriteOp()
      .create(false)
      .compareOmap(`v/${key}`, cmp.eq, expectedVersion === 0 ? "" : String(expectedVersion))
      .setOmap([[`v/${key}`, new TextEncoder().encode(String(version))], [`d/${key}`, value]]);
    try {
      await op.operate(this.#io, MetaShards.shardOf(key));
    } catch (error) {
      if (isRadosError(error, errno.ECANCELED)) throw mismatch(key, expectedVersion);
      throw error;
    }
    return version;
  }

  async delete(key: string, expectedVersion: number): Promise<void> {
    const op = new WriteOp()
      .compareOmap(`v/${key}`, cmp.eq, String(expectedVersion))
      .removeOmap([`v/${key}`, `d/${key}`]);
    try {
      await op.operate(this.#io, MetaShards.shardOf(key));
    } catch (error) {
      if (isRadosError(error, errno.ECANCELED, errno.ENOENT)) {
        throw mismatch(key, expectedVersion);
      }
      throw error;
    }
  }

  /** Keys under `prefix` in every shard, sorted. */
  async list(prefix: string): Promise<string[]> {
    const shards = Array.from(
      { length: metaShards },
      (_, i) => `meta.${String(i).padStart(2, "0")}`,
    );
    const keys = (await Promise.all(shards.map((shard) => this.#listShard(shard, prefix)))).flat();
    return keys.sort();
  }

  async #listShard(shard: string, prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let startAfter = "";
    for (;;) {
      let page = new Map<string, Uint8Array>(), more = false;
      try {
        await new ReadOp().omapRange(
          { startAfter, prefix: `v/${prefix}`, max: listPageKeys },
          (entries, hasMore) => [page, more] = [entries, hasMore],
        ).operate(this.#io, shard);
      } catch (error) {
        if (isRadosError(error, errno.ENOENT)) return keys;
        throw error;
      }
      for (const key of page.keys()) keys.push(key.slice(2));
      if (!more || page.size === 0) return keys;
      startAfter = [...page.keys()].at(-1)!;
    }
  }
}

function mismatch(key: string, expectedVersion: number): VersionMismatchError {
  return new VersionMismatchError(
    `Cannot change metadata ${key}: its version is not ${expectedVersion} any more`,
  );
}
