/**
 * The local engine's metadata: one file a key under `DIR/meta/KIND/NAME`, a
 * header (magic, version, value length) then the value, replaced whole by
 * tmp + fdatasync + rename, durable when put() resolves.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { assert } from "./assert.ts";
import type { MetaEntry } from "./engine.ts";
import { isMetaKey } from "./engine.ts";
import { CorruptionError, VersionMismatchError } from "./errors.ts";
import { KeyedMutex } from "./_mutex.ts";
import { metaValueBytesMax } from "./limits.ts";
import { syncDir, writeAll } from "./_file_io.ts";

const fdatasync = promisify(fs.fdatasync);

const metaMagic = 0x41544d31; // "ATM1"
const metaHeaderBytes = 16; // magic u32, version u32, value length f64

/** Versioned metadata as files (LocalEngine's getMeta, putMeta, deleteMeta, listMeta). */
export class MetaFiles {
  readonly #dir: string;
  readonly #tmpPath: () => string;
  #locks = new KeyedMutex();

  /** `dir`: the data directory; `tmpPath`: a new path for a half-written file. */
  constructor(dir: string, tmpPath: () => string) {
    this.#dir = dir;
    this.#tmpPath = tmpPath;
  }

  /** The entry of `key`, or null. */
  read(key: string): MetaEntry | null {
    assert(isMetaKey(key), `bad meta key ${key}`);
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(this.#path(key));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (
      bytes.length < metaHeaderBytes || view.getUint32(0) !== metaMagic ||
      view.getFloat64(8) !== bytes.length - metaHeaderBytes
    ) {
      throw new CorruptionError(`Cannot read metadata ${key}: the file is malformed`);
    }
    return { version: view.getUint32(4), value: bytes.subarray(metaHeaderBytes) };
  }

  /** Writes `value` as the next version of `key` when its version is `expectedVersion`. */
  put(key: string, value: Uint8Array, expectedVersion: number): Promise<number> {
    assert(isMetaKey(key), `bad meta key ${key}`);
    assert(value.length <= metaValueBytesMax, `meta value of ${value.length} bytes`);
    return this.#locks.run(key, async () => {
      const version = this.read(key)?.version ?? 0;
      if (version !== expectedVersion) {
        throw new VersionMismatchError(
          `Cannot update ${key}: version is ${version}, expected ${expectedVersion}`,
        );
      }
      const header = new DataView(new ArrayBuffer(metaHeaderBytes));
      header.setUint32(0, metaMagic);
      header.setUint32(4, version + 1);
      header.setFloat64(8, value.length);
      const tmp = this.#tmpPath();
      const fd = fs.openSync(tmp, "w", 0o644);
      try {
        writeAll(fd, new Uint8Array(header.buffer), 0);
        writeAll(fd, value, metaHeaderBytes);
        await fdatasync(fd);
      } finally {
        fs.closeSync(fd);
      }
      const path = this.#path(key);
      fs.mkdirSync(join(path, ".."), { recursive: true });
      fs.renameSync(tmp, path);
      await syncDir(join(path, ".."));
      return version + 1;
    });
  }

  /** Deletes `key` when its version is `expectedVersion`. */
  delete(key: string, expectedVersion: number): Promise<void> {
    assert(isMetaKey(key), `bad meta key ${key}`);
    return this.#locks.run(key, async () => {
      const version = this.read(key)?.version ?? 0;
      if (version !== expectedVersion) {
        throw new VersionMismatchError(
          `Cannot delete ${key}: version is ${version}, expected ${expectedVersion}`,
        );
      }
      const path = this.#path(key);
      fs.rmSync(path, { force: true });
      await syncDir(join(path, ".."));
    });
  }

  /** The keys that start with `prefix` (`KIND/...`), sorted. */
  list(prefix: string): string[] {
    const slash = prefix.indexOf("/");
    assert(slash > 0, `meta prefix ${prefix} names no kind`);
    const kind = prefix.slice(0, slash);
    let names: string[];
    try {
      names = fs.readdirSync(join(this.#dir, "meta", kind));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
    const keys = names.map((name) => `${kind}/${name}`).filter((key) =>
      key.startsWith(prefix) && isMetaKey(key)
    );
    return keys.sort();
  }

  #path(key: string): string {
    return join(this.#dir, "meta", key);
  }
}
