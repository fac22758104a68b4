/**
 * The bytes of the acceptor log (acceptor_log.ts). The log is a sequence of
 * frames, one per batch of saves synced together: u32 body length, u32 CRC-32
 * of the body, then the body, entries one after another: u16 key length, the
 * key (UTF-8), u32 state length, the encoded state.
 *
 * A batch is written whole only after the one before it was synced, so a
 * crash can damage the last frame only: a damaged frame followed by a whole
 * one means a damaged disk, not a crash.
 *
 * @module
 */
import zlib from "node:zlib";
import { isMetaKey } from "../../core/mod.ts";

const frameHeadBytes = 8;
const entryHeadBytes = 6;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An entry: `key`'s state, as the body of a frame holds it. */
export function encodeEntry(key: string, state: Uint8Array): Uint8Array {
  const keyBytes = encoder.encode(key);
  const entry = new Uint8Array(entryHeadBytes + keyBytes.length + state.length);
  const view = new DataView(entry.buffer);
  view.setUint16(0, keyBytes.length);
  entry.set(keyBytes, 2);
  view.setUint32(2 + keyBytes.length, state.length);
  entry.set(state, entryHeadBytes + keyBytes.length);
  return entry;
}

/** Bytes `key`'s entry takes (what the live states are measured by). */
export function entryBytes(key: string, state: Uint8Array): number {
  return entryHeadBytes + key.length + state.length;
}

/** One frame of `entries`. */
export function encodeFrame(entries: Uint8Array[]): Uint8Array {
  const length = entries.reduce((sum, entry) => sum + entry.length, 0);
  const frame = new Uint8Array(frameHeadBytes + length);
  let at = frameHeadBytes;
  for (const entry of entries) {
    frame.set(entry, at);
    at += entry.length;
  }
  const view = new DataView(frame.buffer);
  view.setUint32(0, length);
  view.setUint32(4, zlib.crc32(frame.subarray(frameHeadBytes)));
  return frame;
}

/** The whole frame (checksum right) at `at`: its body and where it ends; null if none. */
export function frameAt(bytes: Uint8Array, at: number): { body: Uint8Array; end: number } | null {
  if (at + frameHeadBytes > bytes.length) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, frameHeadBytes);
  const length = view.getUint32(0);
  const body = bytes.subarray(at + frameHeadBytes, at + frameHeadBytes + length);
  if (body.length !== length || length === 0) return null;
  if (zlib.crc32(body) !== view.getUint32(4)) return null;
  return { body, end: at + frameHeadBytes + length };
}

/** The entries of a whole frame's body, in order; throws if they do not parse. */
export function decodeEntries(body: Uint8Array): [string, Uint8Array][] {
  const entries: [string, Uint8Array][] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  for (let at = 0; at < body.length;) {
    if (at + entryHeadBytes > body.length) throw new RangeError("an entry cut short");
    const keyLength = view.getUint16(at);
    if (at + entryHeadBytes + keyLength > body.length) throw new RangeError("a key cut short");
    const key = decoder.decode(body.subarray(at + 2, at + 2 + keyLength));
    if (!isMetaKey(key)) throw new RangeError(`a bad key ${JSON.stringify(key)}`);
    const stateLength = view.getUint32(at + 2 + keyLength);
    const start = at + entryHeadBytes + keyLength;
    if (start + stateLength > body.length) throw new RangeError("a state cut short");
    entries.push([key, body.slice(start, start + stateLength)]);
    at = start + stateLength;
  }
  return entries;
}

/**
 * True when a whole frame follows the damaged one at `at` (its length taken
 * at its word, and so on): the damage is not a torn tail.
 */
export function wholeFrameAfter(bytes: Uint8Array, at: number): boolean {
  for (let next = at; next + frameHeadBytes <= bytes.length;) {
    const length = new DataView(bytes.buffer, bytes.byteOffset + next).getUint32(0);
    if (length === 0) return false;
    next += frameHeadBytes + length;
    if (frameAt(bytes, next) !== null) return true;
  }
  return false;
}
