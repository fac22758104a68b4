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

/**
 * Writes the bytes of lowercase hex `hex` into `into`, which must be half its
 * length; throws RangeError on anything else.
 *
 * @example
 * ```ts
 * const bytes = new Uint8Array(2);
 * fromHex("ba78", bytes); // bytes: [0xba, 0x78]
 * ```
 */
export function fromHex(hex: string, into: Uint8Array): void {
  if (hex.length !== into.length * 2 || !/^[0-9a-f]*$/.test(hex)) {
    throw new RangeError(`bad hex of ${into.length} bytes: ${JSON.stringify(hex.slice(0, 80))}`);
  }
  for (let i = 0; i < into.length; i++) into[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
}
