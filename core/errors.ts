/**
 * Domain errors a caller catches. Wrong shapes and out-of-range values use the
 * built-in TypeError and RangeError; these classes name conditions of the store.
 * The HTTP layer maps each to one status in a single place.
 */

/** The named image, volume or snapshot does not exist. */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}

/** The name is taken, or the operation conflicts with the current state. */
export class ConflictError extends Error {
  override name = "ConflictError";
}

/** A compare-and-set on metadata found another version than expected. */
export class VersionMismatchError extends ConflictError {
  override name = "VersionMismatchError";
}

/**
 * The node cannot serve this now, through no fault of the request: it has not
 * joined its cluster yet, or too few members answer. Retrying later may work.
 */
export class UnavailableError extends Error {
  override name = "UnavailableError";
}

/** A limit of the node was reached (uploads at once, open connections). */
export class BusyError extends Error {
  override name = "BusyError";
}

/** Stored bytes do not match their name (SHA-256), or a record is malformed. */
export class CorruptionError extends Error {
  override name = "CorruptionError";
}

/** A request body ended before the length it announced. */
export class TruncatedError extends Error {
  override name = "TruncatedError";
}

/**
 * This node no longer holds the write lease of the volume (it moved to another
 * node, or was broken): the write is refused and never lands.
 */
export class LeaseLostError extends ConflictError {
  override name = "LeaseLostError";
}

/**
 * Writes acknowledged since the last flush are gone: every copy that held them
 * restarted before a flush made them durable (on one disk: the write cache was
 * lost). The volume goes back to its last flushed state and its next flush
 * fails with this error, as a disk reports a lost cache; it never answers a
 * flush as if they had been kept.
 */
export class WritesLostError extends Error {
  override name = "WritesLostError";
  /** The objects whose unflushed writes were lost. */
  readonly objects: readonly string[];

  constructor(objects: readonly string[], message?: string) {
    super(
      message ??
        `Writes acknowledged since the last flush were lost: no copy of ${
          objects.slice(0, 3).join(", ")
        }${objects.length > 3 ? ` and ${objects.length - 3} more` : ""} holds them any more`,
    );
    this.objects = objects;
  }
}

/** The data disk is full (ENOSPC, or a quota): nothing was lost, but nothing more fits. */
export class NoSpaceError extends Error {
  override name = "NoSpaceError";
}

/** True for a full disk, as NoSpaceError or as the system's error codes. */
export function isNoSpace(error: unknown): boolean {
  if (error instanceof NoSpaceError) return true;
  const code = (error as { code?: unknown })?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}
