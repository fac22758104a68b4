/** Small helpers for running S3 transfers a few at a time. */

/** Runs `work` on every item, at most `limit` at once; the first failure rejects (the rest stop starting). */
export async function eachLimit<T>(
  items: Iterable<T>,
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failed = false;
  const worker = async () => {
    for (let next = iterator.next(); !next.done && !failed; next = iterator.next()) {
      try {
        await work(next.value);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

/** Lowercase hex SHA-256 of `bytes` (WebCrypto: off the event loop, and fast). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** True when every byte is zero. */
export function isAllZero(bytes: Uint8Array): boolean {
  const words = bytes.byteOffset % 8 === 0 && bytes.length % 8 === 0
    ? new BigUint64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8)
    : bytes;
  for (let i = 0; i < words.length; i++) if (words[i] !== 0 && words[i] !== 0n) return false;
  return true;
}
