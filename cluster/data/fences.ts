/**
 * Fencing (DESIGN.md invariant 3): every write to a volume's objects carries
 * the writer's lease epoch; each storing node remembers, durably, the highest
 * epoch it has seen per volume and refuses writes with a lower one, so a holder
 * that was cut off and replaced can never change the volume again.
 */
import type { NodeDisk } from "../../core/mod.ts";
import { ConflictError, VersionMismatchError } from "../../core/mod.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import { RpcError } from "../transport/mod.ts";

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

/** True when `error` is storage refusing an older epoch, here or on a peer. */
export function isFenced(error: unknown): boolean {
  return error instanceof FencedError ||
    (error instanceof RpcError && error.remoteName === "FencedError");
}

function encode(epoch: number): Uint8Array {
  return new TextEncoder().encode(String(epoch));
}
