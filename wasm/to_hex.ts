/** Two lowercase hex digits for each byte value, built once. */
const hexByByte: readonly string[] = Array.from(
  { length: 256 },
  (_, byte) => byte.toString(16).padStart(2, "0"),
);

/**
 * Lowercase hex of a digest (or of any bytes), two characters per byte.
 *
 * @example
 * ```ts
 * toHex(new Uint8Array([0xba, 0x78])); // "ba78"
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  let hex = "";
  for (let i = 0; i < bytes.length; i++) hex += hexByByte[bytes[i]];
  return hex;
}
