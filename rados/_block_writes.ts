/**
 * Blocks on RADOS, written: a block is one object named by its SHA-256,
 * written whole and once (`create(exclusive)` and `write_full` in one
 * operation: visible only whole; a second put gets EEXIST, so exactly one of
 * racing puts is new), and stamped with when it was last stored, so that
 * garbage collection removes only blocks older than its cutoff
 * (_gc_policy.ts), in the same operation as the check.
 */
import { cmp } from "./_librados.ts";
import { errno, isRadosError } from "./_errors.ts";
import { type IoContext, WriteOp } from "./_ops.ts";

/**
 * The xattr of a block that says when it was last stored (milliseconds since
 * the epoch, fixed width): stored again by a dedup hit, it is young again, and
 * garbage collection removes only blocks older than its cutoff (_gc_policy.ts).
 */
const storedXattr = "atoll.stored";

/** Stores block `hash` in `io` (the blocks' namespace); true when it was new. */
export async function putBlock(io: IoContext, hash: string, data: Uint8Array): Promise<boolean> {
  for (;;) {
    const now = timeText(Date.now());
    try {
      await new WriteOp().create(true).setXattr(storedXattr, now).writeFull(data).operate(io, hash);
      return true;
    } catch (error) {
      if (!isRadosError(error, errno.EEXIST)) throw error;
    }
    try {
      // Stored again: young again, so that no collection takes it from under this put.
      await new WriteOp().setXattr(storedXattr, now).operate(io, hash);
      return false;
    } catch (error) {
      if (!isRadosError(error, errno.ENOENT)) throw error; // collected meanwhile: store it
    }
  }
}

/**
 * Removes block `hash` unless it was stored (or stored again) after
 * `cutoffMs` (wall clock), in one operation; true when it is gone.
 */
export async function deleteBlockStoredBefore(
  io: IoContext,
  hash: string,
  cutoffMs: number,
): Promise<boolean> {
  try {
    await new WriteOp().compareXattr(storedXattr, cmp.gte, timeText(cutoffMs)).remove()
      .operate(io, hash);
    return true;
  } catch (error) {
    if (isRadosError(error, errno.ENOENT)) return true;
    if (isRadosError(error, errno.ECANCELED)) return false;
    throw error;
  }
}

/**
 * Makes block `hash` young again (stored now) if it exists, creating nothing;
 * false when it is gone. One stored later (by a node whose clock runs ahead)
 * stays as it is: young already.
 */
export async function refreshBlock(io: IoContext, hash: string): Promise<boolean> {
  const now = timeText(Date.now());
  try {
    await new WriteOp().compareXattr(storedXattr, cmp.gte, now).setXattr(storedXattr, now)
      .operate(io, hash);
    return true;
  } catch (error) {
    if (isRadosError(error, errno.ENOENT)) return false;
    if (isRadosError(error, errno.ECANCELED)) return true;
    throw error;
  }
}

/** A wall-clock time as the stored xattr holds it: fixed width, so strings compare as numbers. */
function timeText(ms: number): string {
  return String(Math.floor(ms)).padStart(16, "0");
}
