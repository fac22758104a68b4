/**
 * What changed in a volume since one of its snapshots, or between two of its
 * snapshots: the extents an incremental backup copies.
 *
 * The answer comes from the maps alone, never from the data: an entry written
 * since a snapshot names another object than the snapshot's (the snapshot
 * froze the volume's objects, so the first write copied the entry up), and an
 * entry trimmed since is zero where the snapshot's was not. So the granularity
 * is the map's block (4 MiB by default): a write of one byte marks its whole
 * block changed. The answer may say more than what changed (a block written
 * back with the bytes it had is still a new object), never less.
 */
import { assert } from "./assert.ts";
import type { BlockMap } from "./block_map.ts";
import type { ByteRange } from "./engine.ts";
import { spansOf } from "./map_io.ts";

/** A run of bytes that changed since the base map, or that did not. */
export interface ChangeExtent {
  offset: number;
  length: number;
  changed: boolean;
}

/** Which parts of `range` of `map` changed since `base` (NBD's dirty bitmap). */
export function changeExtents(base: BlockMap, map: BlockMap, range: ByteRange): ChangeExtent[] {
  assert(range.offset >= 0 && range.offset + range.length <= map.sizeBytes);
  const extents: ChangeExtent[] = [];
  for (const span of spansOf(range, map.blockSize)) {
    const changed = map.differsAt(base, span.index);
    const last = extents.at(-1);
    if (last !== undefined && last.changed === changed) last.length += span.length;
    else extents.push({ offset: range.offset + span.at, length: span.length, changed });
  }
  return extents;
}

/**
 * The changed indexes of a map of `shape`, in increasing order, as byte extents
 * with adjacent ones merged (the last block may be short). More than
 * `extentsMax` extents is a RangeError: the caller bounds its answer.
 */
export async function mergeChanged(
  indexes: Iterable<number> | AsyncIterable<number>,
  shape: { sizeBytes: number; blockSize: number },
  extentsMax: number,
): Promise<ByteRange[]> {
  const extents: ByteRange[] = [];
  let previous = -1;
  for await (const index of indexes) {
    assert(index > previous, "changed indexes come in increasing order");
    previous = index;
    const offset = index * shape.blockSize;
    const length = Math.min(shape.blockSize, shape.sizeBytes - offset);
    const last = extents.at(-1);
    if (last !== undefined && last.offset + last.length === offset) {
      last.length += length;
      continue;
    }
    if (extents.length === extentsMax) {
      throw new RangeError(`Cannot list the changes: more than ${extentsMax} extents`);
    }
    extents.push({ offset, length });
  }
  return extents;
}

/** The changes of a volume as the HTTP API lists them. */
export interface ChangeList {
  volume: string;
  /** The snapshot the changes are counted from. */
  since: string;
  /** The later snapshot they are counted to; null: the live volume. */
  until: string | null;
  /** Bytes of the later side (the volume may have been resized since). */
  size: number;
  /** The granularity: a change anywhere in a block marks the whole block. */
  blockSize: number;
  changedBytes: number;
  /** Changed byte ranges, in increasing order, adjacent ones merged. */
  extents: ByteRange[];
}
