/**
 * Writes of volume objects on RADOS, fenced by lease epoch. A volume object is
 * one object named `UID.GENERATION.INDEX`, written at offsets; with fencing
 * (several nodes on the pool), every write carries, in the same operation,
 * `cmpxattr(atoll.epoch <= mine)` and `setxattr(mine)`: once a holder at a
 * newer epoch wrote an object, an older one cannot.
 */
import { CorruptionError, LeaseLostError } from "../core/mod.ts";
import { cmp } from "./_librados.ts";
import { errno, isRadosError } from "./_errors.ts";
import { type IoContext, WriteOp } from "./_ops.ts";

/** Objects remembered as stamped with this client's epoch. */
const stampedObjectsMax = 65_536;
/** The xattr of a volume object that names the epoch of its last writer. */
const epochXattr = "atoll.epoch";

/** The object writes of one engine, and what it knows of their stamps. */
export class FencedWrites {
  /**
   * Objects this client stamped with its epoch (name → epoch): their xattr says
   * so already, so later writes only compare it (an xattr set again costs the
   * OSD a metadata update per write). Forgotten whole when it grows past
   * stampedObjectsMax.
   */
  #stamped = new Map<string, string>();

  /**
   * One write operation on object `name` of `io`: the fence check (when
   * `epoch` is not null), the truncation, the data. A missing object is
   * created exclusively in a second operation (a comparison cannot run on an
   * object that does not exist); one that appears meanwhile takes the first
   * form again.
   */
  async write(
    io: IoContext,
    name: string,
    offset: number,
    data: Uint8Array,
    options: { truncate?: boolean; existing?: boolean },
    epochNumber: number | null,
  ): Promise<void> {
    const epoch = epochNumber === null ? null : epochText(epochNumber);
    for (let attempt = 0;; attempt++) {
      const op = new WriteOp();
      if (epoch !== null) {
        op.compareXattr(epochXattr, cmp.gte, epoch);
        if (this.#stamped.get(name) !== epoch) op.setXattr(epochXattr, epoch);
      }
      if (options.truncate) op.truncate(0);
      try {
        await op.write(data, offset).operate(io, name);
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
          .operate(io, name);
        this.#stamp(name, epoch);
        return;
      } catch (error) {
        if (!isRadosError(error, errno.EEXIST)) throw error;
      }
    }
  }

  /**
   * Removes object `name` of `io` unless a holder of a newer lease than
   * `epochNumber` wrote it (LeaseLostError); a missing object is no error.
   */
  async remove(io: IoContext, name: string, epochNumber: number): Promise<void> {
    this.#stamped.delete(name);
    try {
      await new WriteOp().compareXattr(epochXattr, cmp.gte, epochText(epochNumber)).remove()
        .operate(io, name);
    } catch (error) {
      if (isRadosError(error, errno.ENOENT)) return;
      if (isRadosError(error, errno.ECANCELED)) {
        throw new LeaseLostError(
          `Cannot delete object ${name}: a holder of a newer write lease wrote it`,
        );
      }
      throw error;
    }
  }

  /** Object `name` is being deleted: its stamp goes with it. */
  forget(name: string): void {
    this.#stamped.delete(name);
  }

  #stamp(name: string, epoch: string | null): void {
    if (epoch === null) return;
    if (this.#stamped.size >= stampedObjectsMax) this.#stamped.clear();
    this.#stamped.set(name, epoch);
  }
}

/** An epoch as the fence xattr holds it: fixed width, so strings compare as numbers. */
function epochText(epoch: number): string {
  return String(epoch).padStart(16, "0");
}
