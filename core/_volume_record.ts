/**
 * The record of an open volume as one instance holds it: its header and map,
 * the record version it last read or wrote, and whether the map changed since;
 * persisting it, and going back to the stored one.
 */
import type { BlockMap, MapEntry } from "./block_map.ts";
import type { Engine } from "./engine.ts";
import { LeaseLostError } from "./errors.ts";
import {
  decodeRecord,
  putRecord,
  recordKey,
  type VolumeHeader,
  type VolumeOrigin,
} from "./records.ts";
import { storeMapPages } from "./map_store.ts";
import type { PagePins } from "./_page_pins.ts";
import { isUnlimited, type VolumeQos } from "./qos.ts";

/** The header, map and version of one Volume instance (the Volume locks around it). */
export class VolumeRecord {
  readonly #engine: Engine;
  #header: VolumeHeader;
  #map: BlockMap;
  #version: number;
  #dirty = false;
  /** Object names this volume writes in place start with this: `UID.GENERATION.` */
  #ownedPrefix: string;
  #pins: PagePins;
  /**
   * Pages stored ahead of the next persist(), pinned: their bytes (kept until a
   * record names them), the release of their pins, and whether the operation that
   * stored them failed (carryPins).
   */
  #pinned: PinnedPages[] = [];

  constructor(
    engine: Engine,
    header: VolumeHeader,
    map: BlockMap,
    version: number,
    pins: PagePins,
  ) {
    this.#engine = engine;
    this.#pins = pins;
    this.#header = header;
    this.#map = map;
    this.#version = version;
    this.#ownedPrefix = ownedPrefixOf(header);
  }

  /** The header (not a copy: the Volume hands out copies). */
  get header(): VolumeHeader {
    return this.#header;
  }
  /** The current map (not a copy). */
  get map(): BlockMap {
    return this.#map;
  }
  /** The record version last read or written. */
  get version(): number {
    return this.#version;
  }
  /** True when the map changed since the record was last read or written. */
  get dirty(): boolean {
    return this.#dirty;
  }

  /** True when `name` is an object this volume may write in place. */
  owns(name: string): boolean {
    return name.startsWith(this.#ownedPrefix);
  }

  /** Changes one entry of the map (persisted by the next persist()). */
  setEntry(index: number, entry: MapEntry): void {
    this.#map.set(index, entry);
    this.#dirty = true;
  }

  /** Gives the map `sizeBytes` bytes (BlockMap.resized; persisted by the next persist()). */
  resize(sizeBytes: number): void {
    this.#map = this.#map.resized(sizeBytes);
    this.#dirty = true;
  }

  /**
   * Makes `map` (a snapshot's, for a rollback) the volume's, in the next
   * generation: what the map names is copied up before it changes, and the
   * objects of this generation it does not name become garbage (gc.ts keeps
   * a volume's objects from the generation marked on). Persisted by the next
   * persist().
   */
  replaceMap(map: BlockMap): void {
    this.#map = map.clone();
    this.#dirty = true;
    this.nextGeneration();
  }

  /** Changes where the header says the volume came from (a flatten; persist() next). */
  setOrigin(origin: VolumeOrigin): void {
    this.#header = { ...this.#header, origin };
  }

  /** Marks (or unmarks) the header: writes since the last flush were lost (persist() next). */
  setWritesLost(lost: boolean): void {
    this.#header = { ...this.#header, writesLost: lost ? true : undefined };
  }

  /** Sets the volume's I/O limits (persist() next); none when empty. */
  setQos(qos: VolumeQos): void {
    const { qos: _, ...rest } = this.#header;
    this.#header = isUnlimited(qos) ? rest : { ...rest, qos };
  }

  /** Starts the next generation: objects of the current one are copied up before they change. */
  nextGeneration(): void {
    this.#header = { ...this.#header, generation: this.#header.generation + 1 };
    this.#ownedPrefix = ownedPrefixOf(this.#header);
  }

  /**
   * Stores the map's pages that changed (durable with the engine's next flush
   * of this volume; persist() stores and flushes those left), pinned until a
   * persist() names them or reload() gives them up. True when any was.
   */
  storePages(): Promise<boolean> {
    // Pinned until the record names them (or fails to): see _page_pins.ts.
    const pages = this.#map.unstored().map(({ id, bytes }) => ({ id, bytes: bytes! }));
    this.#pinned.push({
      pages,
      release: this.#pins.pin(pages.map((page) => page.id)),
      carried: false,
    });
    return storeMapPages(this.#engine, this.#map);
  }

  /**
   * The operation under way failed: pages it stored wait, pinned, for a later
   * persist(), which stores them again first. A collection on a member that saw
   * this node gone (cut off, or its view stale) cannot have asked for its pins, and
   * may have swept them meanwhile (seed 1429634 with joins and leaves: a snapshot
   * stored a page, failed, and the next flush wrote a record naming the swept page).
   */
  carryPins(): void {
    for (const group of this.#pinned) group.carried = true;
  }

  /**
   * Writes the header and map as the next version of the record. The pages it
   * names stay pinned until that write succeeds: after a failed one (no
   * metadata quorum) the map still names them, a later persist writes a root
   * naming them without storing them again, and a collection in between must
   * not take them (seed 840073 with joins, leaves and replacements).
   */
  async persist(): Promise<void> {
    let stored = false;
    for (const group of this.#pinned.filter((group) => group.carried)) {
      for (const page of group.pages) await this.#engine.putBlock(page.id, page.bytes);
      stored ||= group.pages.length > 0;
      group.carried = false;
    }
    if (this.#map.unstored().length > 0 && await this.storePages()) stored = true;
    if (stored) await this.#engine.flush(this.#header.uid);
    this.#version = await putRecord(
      this.#engine,
      recordKey.volume(this.#header.name),
      { header: this.#header, map: this.#map, volume: this.#header.uid },
      this.#version,
      this.#pins,
    );
    for (const { release } of this.#pinned.splice(0)) release();
    this.#dirty = false;
  }

  /** Takes the header and map back to the stored record's (the last flush). */
  async reload(): Promise<void> {
    const name = this.#header.name;
    const entry = await this.#engine.getMeta(recordKey.volume(name));
    if (entry === null || entry.version !== this.#version) {
      throw new LeaseLostError(
        `Cannot go back to the last flush of volume "${name}": its record moved on`,
      );
    }
    const { header, map } = await decodeRecord<VolumeHeader>(this.#engine, entry.value);
    this.#header = header;
    this.#map = map;
    this.#ownedPrefix = ownedPrefixOf(header);
    this.#dirty = false;
    // Pages stored for the map given up: no record will name them.
    for (const { release } of this.#pinned.splice(0)) release();
  }
}

/** Map pages stored ahead of a persist(); see VolumeRecord's `#pinned`. */
interface PinnedPages {
  pages: { id: string; bytes: Uint8Array }[];
  release: () => void;
  carried: boolean;
}

function ownedPrefixOf(header: VolumeHeader): string {
  return `${header.uid}.${header.generation}.`;
}
