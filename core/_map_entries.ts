/**
 * The entries of a map (block_map.ts): what holds the bytes of one block-sized
 * span, and its binary form (a kind byte and a 32-byte reference: a block's
 * hash, or an object's uid[16], generation u32, index u32 and 8 zero bytes).
 */
import { fromHex, toHex } from "../wasm/to_hex.ts";
import { assert } from "./assert.ts";
import { CorruptionError } from "./errors.ts";
import { refBytes } from "./_map_pages.ts";

/** What an entry of a map points at. */
export type MapEntry =
  | { kind: "zero" }
  | { kind: "block"; hash: string }
  | { kind: "object"; name: string };

/** Kind bytes of the binary form. */
export const kindZero = 0;
export const kindBlock = 1;
export const kindObject = 2;

/** Bytes of an entry's reference in its binary form (besides its kind byte). */
export const entryRefBytes = refBytes;

/** Writes `entry`'s reference into `ref` (entryRefBytes long); returns its kind byte. */
export function encodeEntry(entry: MapEntry, ref: Uint8Array): number {
  assert(ref.length === refBytes);
  ref.fill(0);
  if (entry.kind === "zero") return kindZero;
  if (entry.kind === "block") {
    fromHex(entry.hash, ref);
    return kindBlock;
  }
  const { uid, generation, index } = parseObjectName(entry.name);
  fromHex(uid, ref.subarray(0, 16));
  const view = new DataView(ref.buffer, ref.byteOffset, refBytes);
  view.setUint32(16, generation);
  view.setUint32(20, index);
  return kindObject;
}

/** The entry of kind byte `kind` and reference `ref`; throws CorruptionError on an unknown kind. */
export function decodeEntry(kind: number, ref: Uint8Array): MapEntry {
  switch (kind) {
    case kindZero:
      return { kind: "zero" };
    case kindBlock:
      return { kind: "block", hash: toHex(ref) };
    case kindObject: {
      const view = new DataView(ref.buffer, ref.byteOffset, refBytes);
      const name = `${toHex(ref.subarray(0, 16))}.${view.getUint32(16)}.${view.getUint32(20)}`;
      return { kind: "object", name };
    }
    default:
      throw new CorruptionError(`Cannot decode map entry: unknown kind ${kind}`);
  }
}

/** Name of the object holding entry `index` of the volume `uid` in `generation`. */
export function objectName(uid: string, generation: number, index: number): string {
  return `${uid}.${generation}.${index}`;
}

/** The parts of an object name. */
export type ObjectNameParts = Readonly<{ uid: string; generation: number; index: number }>;

/**
 * Names parsed lately: a lease holder parses an object's name several times
 * at every read and write of it (a 1-node cluster's 4 KiB reads spent 4% of
 * their time splitting names).
 */
const parsedNames = new Map<string, ObjectNameParts>();
/** Names kept in {@linkcode parsedNames}; all forgotten at once when full. */
const parsedNamesMax = 4096;

/** Splits an object name into its parts. */
export function parseObjectName(name: string): ObjectNameParts {
  let parts = parsedNames.get(name);
  if (parts === undefined) {
    const [uid, generation, index] = name.split(".");
    assert(/^[0-9a-f]{32}$/.test(uid) && generation !== undefined && index !== undefined);
    parts = Object.freeze({ uid, generation: Number(generation), index: Number(index) });
    if (parsedNames.size >= parsedNamesMax) parsedNames.clear();
    parsedNames.set(name, parts);
  }
  return parts;
}

/** True when `a` and `b` hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
