/**
 * Byte counts as people type and read them: `10G` on the command line,
 * `2.0 GiB` in a table. Suffixes are binary multiples (K = 1024), as in
 * qemu-img and the sizes hypervisors report.
 */

const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
const multipliers: Record<string, number> = {
  "": 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
  P: 1024 ** 5,
};

/**
 * Parses a size: a byte count, or a number with a binary suffix K, M, G, T or P
 * (optionally written `KiB`, `GiB`...; `B` alone means bytes). Fractions are
 * accepted when they make a whole number of bytes (`1.5G`). Throws a TypeError
 * naming the text when it is not a size.
 *
 * @example
 * ```ts
 * parseSize("10G"); // 10737418240
 * parseSize("4096"); // 4096
 * ```
 */
export function parseSize(text: string): number {
  const match = text.trim().match(/^(\d+(?:\.\d+)?)\s*(?:([KMGTP])(?:iB)?|B)?$/i);
  const shown = JSON.stringify(text);
  if (!match) {
    const hint = /^\d+(?:\.\d+)?\s*[KMGTP]B$/i.test(text.trim())
      ? " (suffixes are binary: write G or GiB, not GB)"
      : "";
    throw new TypeError(
      `Cannot use size ${shown}: expected bytes or a number with K, M, G, T${hint}`,
    );
  }
  const bytes = Number(match[1]) * multipliers[(match[2] ?? "").toUpperCase()];
  if (!Number.isSafeInteger(bytes)) {
    throw new TypeError(`Cannot use size ${shown}: not a whole number of bytes below 2^53`);
  }
  return bytes;
}

/**
 * Formats a byte count with binary units and one decimal, bytes as they are.
 *
 * @example
 * ```ts
 * formatSize(2 * 1024 ** 3); // "2.0 GiB"
 * formatSize(512); // "512 B"
 * ```
 */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "-";
  let unit = 0;
  let value = bytes;
  // Round first so that 1023.96 KiB shows as "1.0 MiB", never "1024.0 KiB".
  while (unit < units.length - 1 && Math.round(value * 10) / 10 >= 1024) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}
