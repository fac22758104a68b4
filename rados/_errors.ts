/** librados' failures, by errno (librados returns them negated). */

/** The errno values the engine tells apart. */
export const errno = {
  ENOENT: 2,
  EEXIST: 17,
  ENODATA: 61,
  /** The client was blocklisted (fenced) by another client: nothing it sends lands. */
  ESHUTDOWN: 108,
  ETIMEDOUT: 110,
  /** A comparison step of a compound operation failed (cmpxattr, omap_cmp). */
  ECANCELED: 125,
} as const;

/** A librados call failed with `code` (a positive errno). */
export class RadosError extends Error {
  override name = "RadosError";
  readonly code: number;

  constructor(code: number, what: string) {
    super(`Cannot ${what}: ${describe(code)}`);
    this.code = code;
  }
}

/** True when `error` is a RadosError with one of `codes`. */
export function isRadosError(error: unknown, ...codes: number[]): error is RadosError {
  return error instanceof RadosError && codes.includes(error.code);
}

function describe(code: number): string {
  const known: Record<number, string> = {
    [errno.ENOENT]: "not found (ENOENT)",
    [errno.EEXIST]: "object exists (EEXIST)",
    [errno.ENODATA]: "no such attribute (ENODATA)",
    [errno.ESHUTDOWN]: "this client is blocklisted (ESHUTDOWN)",
    [errno.ETIMEDOUT]: "timed out (ETIMEDOUT)",
    [errno.ECANCELED]: "a comparison failed (ECANCELED)",
    1: "operation not permitted (EPERM)",
    13: "permission denied (EACCES)",
    28: "no space left (ENOSPC)",
    122: "quota exceeded (EDQUOT)",
  };
  return known[code] ?? `errno ${code}`;
}
