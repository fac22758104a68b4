/**
 * A failed assertion is a bug in Atoll, never an operating error: disk full or a
 * peer gone are handled where they happen, not asserted.
 */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Throws an {@linkcode AssertionError} when `condition` is false. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}
