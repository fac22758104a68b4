/**
 * What a client of a simulated volume may read back, sector by sector. Every
 * write fills whole sectors with a pattern naming the write (its tag) and the
 * sector, so a read says which write each sector holds, or that it is torn.
 *
 * The model keeps, per sector, the tags the volume may hold now (`current`)
 * and the tags that may have survived as its durable state (`durable`):
 *
 * - an acknowledged write makes its tag the only current one;
 * - a write that failed (or whose node crashed) may have landed, now or later,
 *   and may have been made durable by a later flush: its tag joins both;
 * - a successful flush makes the current tags the durable ones; a failed one
 *   may have made any write since the last successful flush durable, or lost
 *   it, even one a later write overwrote (a disk orders nothing it did not
 *   flush), or gone back to the last flush: every such tag joins both;
 * - a read may return a current or a durable tag (acknowledged writes not
 *   flushed yet are lost when the lease is taken from a holder declared dead).
 *
 * A lease taken over since the last flush may have dropped unflushed writes
 * without any client seeing it, so a flush then keeps the durable tags too.
 *
 * @module
 */
import { simBlockSize } from "./_cluster_sim_node.ts";

/** Other clients' writes remembered after they end (for the writes they overlapped). */
const landedKeptMax = 64;
/** Bytes of one sector: the unit of the workload's writes and of the model. */
export const sectorBytes = 4096;
/** Blocks of a simulated volume, and of a simulated image (its clones are volumes). */
export const volumeBlocks = 4;
/** Sectors of a simulated volume or image. */
export const volumeSectors = volumeBlocks * simBlockSize / sectorBytes;
/** Bytes of one repeated unit of a sector's pattern: u32 tag, u32 sector index. */
const unitBytes = 8;
/** The tag of a sector nobody wrote (zeros). */
export const zeroTag = 0;
/** The "tag" of a sector holding neither zeros nor one write's pattern. */
export const tornTag = -1;

/** The bytes of write `tag` over `count` sectors from sector `first`. */
export function sectorPattern(tag: number, first: number, count: number): Uint8Array {
  const data = new Uint8Array(count * sectorBytes);
  const view = new DataView(data.buffer);
  for (let s = 0; s < count; s++) {
    for (let at = 0; at < sectorBytes; at += unitBytes) {
      view.setUint32(s * sectorBytes + at, tag);
      view.setUint32(s * sectorBytes + at + 4, first + s);
    }
  }
  return data;
}

/** The tag of each sector of `data`, read from sector `first` on. */
export function sectorTags(data: Uint8Array, first: number): number[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const tags: number[] = [];
  for (let s = 0; s * sectorBytes < data.length; s++) {
    const base = s * sectorBytes;
    const tag = view.getUint32(base);
    const index = view.getUint32(base + 4);
    let tagOf = tag === 0 && index === 0 ? zeroTag : index === first + s ? tag : tornTag;
    for (let at = base; at < base + sectorBytes && tagOf !== tornTag; at += unitBytes) {
      if (view.getUint32(at) !== tag || view.getUint32(at + 4) !== index) tagOf = tornTag;
    }
    tags.push(tagOf);
  }
  return tags;
}

/** `count` sectors cut into `pieces` runs as even as can be: [first, sectors] of each. */
export function sectorPieces(count: number, pieces: number): [number, number][] {
  const runs: [number, number][] = [];
  for (let i = 0, at = 0; i < pieces; i++) {
    const sectors = Math.floor((count - at) / (pieces - i));
    runs.push([at, sectors]);
    at += sectors;
  }
  return runs;
}

/** A volume as its clients know it. */
export class VolumeModel {
  readonly name: string;
  readonly sectors: number;
  /** "live" until deleted; "unknown" once an outcome could not be known (no more checks). */
  state: "live" | "deleted" | "unknown" = "live";
  /** An operation of the volume's client is under way. */
  busy = false;
  /** Snapshots taken, with the tags each sector may hold in them. */
  readonly snapshots = new Map<string, Set<number>[]>();
  #current: Set<number>[];
  #durable: Set<number>[];
  /** Tags written since the last successful flush, overwritten or not. */
  #sinceFlush: Set<number>[];
  /** Writes of other clients under way (lease contention), by tag: any of them may land. */
  #floating = new Map<number, { first: number; count: number }>();
  /** Other clients' writes that ended lately, and when (a write they overlapped may precede them). */
  #landed: { first: number; count: number; tag: number; atMs: number }[] = [];

  constructor(name: string, sectors: Set<number>[]) {
    this.name = name;
    this.sectors = sectors.length;
    this.#current = sectors.map((tags) => new Set(tags));
    this.#durable = sectors.map((tags) => new Set(tags));
    this.#sinceFlush = sectors.map(() => new Set());
  }

  /** A volume created empty. */
  static empty(name: string, sectors: number): VolumeModel {
    return new VolumeModel(name, Array.from({ length: sectors }, () => new Set([zeroTag])));
  }

  /**
   * A write that started at `startedMs` was acknowledged: it is the sector's
   * only current tag, but for other clients' writes that landed while it ran
   * (either may have reached the disk last).
   */
  acknowledged(first: number, count: number, tag: number, startedMs = Infinity): void {
    const racing = this.#landed.filter((landed) => landed.atMs >= startedMs);
    for (let s = first; s < first + count; s++) {
      this.#current[s] = new Set([tag]);
      for (const landed of racing) {
        if (landed.first <= s && s < landed.first + landed.count) this.#current[s].add(landed.tag);
      }
      this.#sinceFlush[s].add(tag);
    }
  }

  failed(first: number, count: number, tag: number): void {
    for (let s = first; s < first + count; s++) {
      this.#current[s].add(tag);
      this.#durable[s].add(tag);
      this.#sinceFlush[s].add(tag);
    }
  }

  /** A flush (or a snapshot's freeze) succeeded; `takenOver`: a lease was taken over since. */
  flushed(takenOver: boolean): void {
    // A crash or takeover since may have kept any subset of the writes since the
    // last flush, an overwritten one included.
    this.#durable = this.#current.map((tags, s) =>
      new Set(takenOver ? [...tags, ...this.#durable[s], ...this.#sinceFlush[s]] : tags)
    );
    if (takenOver) this.#current = this.#durable.map((tags) => new Set(tags));
    this.#sinceFlush = this.#sinceFlush.map(() => new Set());
  }

  /**
   * A crash or a takeover may have dropped writes since the last flush: any
   * subset of them may be what the volume holds now, an overwritten one
   * included, before any flush says so.
   */
  mayHaveLost(): void {
    this.#current = this.#current.map((tags, s) => new Set([...tags, ...this.#sinceFlush[s]]));
  }

  flushFailed(): void {
    // It may also have found the writes since the last successful flush lost and
    // gone back to what that flush made durable.
    this.#current = this.#current.map((tags, s) =>
      new Set([...tags, ...this.#sinceFlush[s], ...this.#durable[s]])
    );
    this.#durable = this.#durable.map((tags, s) => new Set([...tags, ...this.#current[s]]));
  }

  /** Another client's write starts: until it ends, any sector of it may hold it. */
  float(first: number, count: number, tag: number): void {
    this.#floating.set(tag, { first, count });
  }

  /** Another client's write ended (either way): it may have landed, as a failed write. */
  land(tag: number, atMs = -Infinity): void {
    const range = this.#floating.get(tag)!;
    this.#floating.delete(tag);
    this.failed(range.first, range.count, tag);
    this.#landed.push({ ...range, tag, atMs });
    if (this.#landed.length > landedKeptMax) this.#landed.shift();
  }

  /** The tags sector `s` may read as now. */
  allowed(s: number): Set<number> {
    const tags = new Set([...this.#current[s], ...this.#durable[s]]);
    for (const [tag, { first, count }] of this.#floating) {
      if (first <= s && s < first + count) tags.add(tag);
    }
    return tags;
  }

  /** What a read of sectors from `first` returned, against the model: violations found. */
  check(first: number, tags: number[], what: string): string[] {
    return checkSectors(`${what}: volume "${this.name}"`, first, tags, (s) => this.allowed(s));
  }

  /** The allowed tags of each sector, for a trace. */
  toString(): string {
    return this.allowedAll().map((tags) => [...tags].join("/")).join(" ");
  }

  /** The allowed tags of every sector now (a snapshot's content, a clone's start). */
  allowedAll(): Set<number>[] {
    return Array.from({ length: this.sectors }, (_, s) => this.allowed(s));
  }
}

/**
 * What a read of sectors from `first` returned (`tags`), against the tags each
 * sector may hold (`allowed`): one violation per sector that holds another.
 */
export function checkSectors(
  what: string,
  first: number,
  tags: number[],
  allowed: (sector: number) => Set<number>,
): string[] {
  const violations: string[] = [];
  tags.forEach((tag, i) => {
    const may = allowed(first + i);
    if (!may.has(tag)) {
      violations.push(
        `${what} sector ${first + i} reads ${tag === tornTag ? "torn bytes" : `write ${tag}`}, ` +
          `allowed ${[...may].sort((a, b) => a - b).join(",")}`,
      );
    }
  });
  return violations;
}
