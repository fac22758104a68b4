/**
 * Volume objects on a storing node, with fencing (DESIGN.md invariant 3): every
 * write carries the writer's lease epoch for the volume; the node remembers, durably,
 * the highest epoch it has seen per volume and refuses writes with a lower one.
 * A holder that was cut off and replaced can therefore never change the volume
 * again, whatever it still believes.
 */
import type { Engine } from "../core/mod.ts";
import { ConflictError, isObjectName, VersionMismatchError } from "../core/mod.ts";
import { parseObjectName } from "../core/block_map.ts";
import { KeyedMutex } from "../core/_mutex.ts";
import type { RpcMethod } from "./rpc.ts";

/** A write carried an epoch below one this node has seen for the volume. */
export class FencedError extends ConflictError {
  override name = "FencedError";
}

/** The fence of each volume on one node: highest epoch seen, kept in `fence/UID`. */
export class Fences {
  #engine: Engine;
  #cache = new Map<string, { epoch: number; version: number }>();
  #locks = new KeyedMutex();

  constructor(engine: Engine) {
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

/** The methods a node serves for objects it stores. */
export function objectMethods(engine: Engine, fences: Fences): Record<string, RpcMethod> {
  return {
    "object.write": async (request) => {
      const { name, uid } = objectOf(request.header.name);
      const epoch = request.header.epoch;
      const offset = request.header.offset;
      if (!Number.isSafeInteger(epoch) || (epoch as number) < 1) throw new TypeError("bad epoch");
      if (!Number.isSafeInteger(offset) || (offset as number) < 0) {
        throw new TypeError("bad offset");
      }
      await fences.admit(uid, epoch as number);
      await engine.writeObject(name, offset as number, request.data ?? new Uint8Array(), {
        truncate: request.header.truncate === true,
      });
      return { header: {} };
    },
    "object.read": async (request) => {
      const { name } = objectOf(request.header.name);
      const offset = request.header.offset, length = request.header.length;
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) {
        throw new TypeError("bad range");
      }
      if ((length as number) < 0 || (length as number) > 64 * 1024 * 1024) {
        throw new RangeError("bad length");
      }
      const data = new Uint8Array(length as number);
      await engine.readObject(name, { offset: offset as number, length: length as number }, data);
      return { header: {}, data };
    },
    "object.flush": async () => {
      await engine.flush();
      return { header: {} };
    },
  };
}

function objectOf(value: unknown): { name: string; uid: string } {
  if (typeof value !== "string" || !isObjectName(value)) {
    throw new TypeError(`bad object name ${JSON.stringify(value)}`);
  }
  return { name: value, uid: parseObjectName(value).uid };
}

function encode(epoch: number): Uint8Array {
  return new TextEncoder().encode(String(epoch));
}
