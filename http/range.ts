/** The HTTP `Range` header, single-range form (RFC 9110 §14.1.2). */

/** The outcome of parsing a Range header against a resource of known size. */
export type RangeRequest =
  | { kind: "whole" }
  | { kind: "part"; offset: number; length: number }
  | { kind: "unsatisfiable" };

const rangePattern = /^bytes=(\d*)-(\d*)$/;

/**
 * Interprets `header` for a resource of `sizeBytes`. Missing, malformed and
 * multi-range headers ask for the whole resource (a server may ignore Range);
 * a range that starts past the end is unsatisfiable (416).
 *
 * @example
 * ```ts
 * parseRange("bytes=0-99", 1000); // { kind: "part", offset: 0, length: 100 }
 * parseRange("bytes=-10", 1000);  // { kind: "part", offset: 990, length: 10 }
 * ```
 */
export function parseRange(header: string | undefined | null, sizeBytes: number): RangeRequest {
  const match = header?.trim().match(rangePattern);
  if (!match || (match[1] === "" && match[2] === "")) return { kind: "whole" };
  const [first, last] = [match[1], match[2]];
  if (first === "") {
    const suffix = Math.min(Number(last), sizeBytes);
    if (suffix === 0) return { kind: "unsatisfiable" };
    return { kind: "part", offset: sizeBytes - suffix, length: suffix };
  }
  const offset = Number(first);
  if (!Number.isSafeInteger(offset) || offset >= sizeBytes) return { kind: "unsatisfiable" };
  const end = last === "" ? sizeBytes - 1 : Math.min(Number(last), sizeBytes - 1);
  if (end < offset) return { kind: "whole" };
  return { kind: "part", offset, length: end - offset + 1 };
}
