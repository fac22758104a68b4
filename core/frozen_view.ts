/** A read-only view of an image or a snapshot: a map that never changes. */
import type { BlockMap } from "./block_map.ts";
import type { ByteRange, Engine } from "./engine.ts";
import { checkRange, type Extent, mapExtents, readMapRange } from "./map_io.ts";

/** Reads an immutable map (image or snapshot) the way a Volume reads its own. */
export class FrozenView {
  readonly name: string;
  readonly engine: Engine;
  readonly map: BlockMap;

  constructor(engine: Engine, name: string, map: BlockMap) {
    this.engine = engine;
    this.name = name;
    this.map = map;
  }

  /** Size in bytes. */
  get sizeBytes(): number {
    return this.map.sizeBytes;
  }
  /** Bytes per map entry. */
  get blockSize(): number {
    return this.map.blockSize;
  }

  /** Reads `range` into `into` (or a new buffer). */
  async readAt(
    range: ByteRange,
    into: Uint8Array = new Uint8Array(range.length),
  ): Promise<Uint8Array> {
    checkRange(range, this.sizeBytes, this.name);
    await readMapRange(this.engine, this.map, range, into);
    return into;
  }

  /** Which parts of `range` are zero entries. */
  extents(range: ByteRange): Extent[] {
    checkRange(range, this.sizeBytes, this.name);
    return mapExtents(this.map, range);
  }
}
