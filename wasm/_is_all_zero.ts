/**
 * Zero-block detection for the hash engines: thin-provisioned images upload long runs of
 * zero blocks, and recognising one costs far less than hashing it.
 *
 * @module
 */

/** Bytes in one machine word of the scan below. */
const wordBytes = 4;

/** Words OR-ed together per loop step; unrolling lets V8 keep the loop tight. */
const unrollWords = 8;

/**
 * Returns true when every byte of `bytes` is zero (also for an empty view).
 *
 * Scans whole 32-bit words where the view is aligned, and single bytes at the unaligned
 * head and tail; it returns at the first nonzero word, so random data costs almost nothing.
 *
 * @example
 * ```ts
 * isAllZero(new Uint8Array(4096)); // true
 * ```
 */
export function isAllZero(bytes: Uint8Array): boolean {
  const end = bytes.byteLength;
  // Bytes before the first word boundary of the underlying buffer.
  const head = (wordBytes - (bytes.byteOffset % wordBytes)) % wordBytes;
  if (end < head + wordBytes) return _isAllZeroBytes(bytes, 0);
  for (let i = 0; i < head; i++) {
    if (bytes[i] !== 0) return false;
  }
  const wordCount = Math.floor((end - head) / wordBytes);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset + head, wordCount);
  let i = 0;
  for (; i + unrollWords <= wordCount; i += unrollWords) {
    const any = words[i] | words[i + 1] | words[i + 2] | words[i + 3] |
      words[i + 4] | words[i + 5] | words[i + 6] | words[i + 7];
    if (any !== 0) return false;
  }
  for (; i < wordCount; i++) {
    if (words[i] !== 0) return false;
  }
  return _isAllZeroBytes(bytes, head + wordCount * wordBytes);
}

/** Byte-at-a-time scan of `bytes` from index `start`, for views too short to hold a word. */
function _isAllZeroBytes(bytes: Uint8Array, start: number): boolean {
  for (let i = start; i < bytes.byteLength; i++) {
    if (bytes[i] !== 0) return false;
  }
  return true;
}
