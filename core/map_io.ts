/** Reading byte ranges through a map: the one read path of images, volumes and snapshots. */
import { assert } from "./assert.ts";
import type { BlockMap, MapEntry } from "./block_map.ts";
import type { ByteRange, Engine } from "./engine.ts";

/** One block-sized piece of a byte range: which entry, and where inside it. */
export interface Span {
  index: number;
  /** Offset inside the entry's block. */
  offset: number;
  length: number;
  /** Offset of this piece inside the whole range. */
  at: number;
}

/** Splits `range` into the pieces that fall in each entry of a map of `blockSize`. */
export function* spansOf(range: ByteRange, blockSize: number): Generator<Span> {
  let at = 0;
  while (at < range.length) {
    const position = range.offset + at;
    const index = Math.floor(position / blockSize);
    const offset = position - index * blockSize;
    const length = Math.min(blockSize - offset, range.length - at);
    yield { index, offset, length, at };
    at += length;
  }
}

/**
 * How a map's objects are read: `view` (see Engine.readObject), and `owns`,
 * the objects a writer may still change (the reading volume's own); every
 * other object a map names is frozen. Without `owns`, all are (a snapshot).
 */
export interface MapReading {
  view?: string;
  owns?: (name: string) => boolean;
  /** See Engine.readObject. */
  orphaned?: boolean;
  /** The bytes of one block of the map (Engine.readObject's `extent`). */
  blockBytes?: number;
}

/** Reads `range` of one entry into `into`. */
export async function readEntry(
  engine: Engine,
  entry: MapEntry,
  range: ByteRange,
  into: Uint8Array,
  reading: MapReading = {},
): Promise<void> {
  if (entry.kind === "zero") into.fill(0);
  else if (entry.kind === "block") await engine.readBlock(entry.hash, range, into);
  else {
    const frozen = !(reading.owns?.(entry.name) ?? false);
    await engine.readObject(entry.name, range, into, {
      existing: true,
      view: reading.view,
      frozen,
      orphaned: reading.orphaned,
      extent: reading.blockBytes,
    });
  }
}

/** Reads `range` of the bytes `map` describes into `into` (length range.length). */
export async function readMapRange(
  engine: Engine,
  map: BlockMap,
  range: ByteRange,
  into: Uint8Array,
  reading: MapReading = {},
): Promise<void> {
  assert(into.length === range.length);
  assert(range.offset >= 0 && range.offset + range.length <= map.sizeBytes);
  for (const span of spansOf(range, map.blockSize)) {
    const part = into.subarray(span.at, span.at + span.length);
    await readEntry(engine, map.get(span.index), span, part, reading);
  }
}

/** Throws a RangeError unless `range` lies inside `sizeBytes` bytes of `what`. */
export function checkRange(range: ByteRange, sizeBytes: number, what: string): void {
  const { offset, length } = range;
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
    offset + length > sizeBytes
  ) {
    throw new RangeError(
      `Cannot access bytes ${offset}..${offset + length} of ${what}: it has ${sizeBytes} bytes`,
    );
  }
}

/** A run of bytes that is all zero entries, or all data. */
export interface Extent {
  offset: number;
  length: number;
  zero: boolean;
}

/** Which parts of `range` are zero entries of `map` (for NBD block status and sparse copies). */
export function mapExtents(map: BlockMap, range: ByteRange): Extent[] {
  const extents: Extent[] = [];
  for (const span of spansOf(range, map.blockSize)) {
    const zero = map.isZero(span.index);
    const last = extents.at(-1);
    if (last !== undefined && last.zero === zero) last.length += span.length;
    else extents.push({ offset: range.offset + span.at, length: span.length, zero });
  }
  return extents;
}
