/**
 * The volume instances of one node: one shared instance per volume, opened on
 * first use, and fresh unshared ones for readers; with a cluster's say (its
 * write leases) on which instance is current.
 */
import type { Engine } from "./engine.ts";
import { LeaseLostError, NotFoundError } from "./errors.ts";
import { validateName } from "./names.ts";
import { decodeRecord, recordKey, type VolumeHeader, type VolumeLease } from "./records.ts";
import type { PagePins } from "./_page_pins.ts";
import type { IoLimiters } from "./_io_limiters.ts";
import { Volume } from "./volume.ts";

/** How a cluster governs access to volumes (see {@linkcode Store.access}). */
export interface VolumeAccess {
  /**
   * Takes the write lease of `name` to this node, moving it if need be; for a
   * catalogue change (snapshot, deletion), refuses instead while another live
   * node holds it (that would fence a running VM).
   */
  acquire(name: string, purpose: "write" | "catalogue"): Promise<void>;
  /** True when this node holds the write lease of `name`, so its open instance is current. */
  isCurrent(name: string): boolean;
  /**
   * The lease of `name` this node holds, as a record names it (holder and
   * epoch); null when it holds none. A node taken over while cut off still
   * counts itself the holder until it hears of it; an instance it reads from
   * the record then names the new holder's lease, and is not its to change.
   */
  heldLease(name: string): Pick<VolumeLease, "holder" | "epoch"> | null;
}

/** The open volumes of one node (Store.openVolume and its kin say what each call does). */
export class VolumeInstances {
  #engine: Engine;
  #access: VolumeAccess | null;
  #volumes = new Map<string, Promise<Volume>>();
  #pins: PagePins;
  /** Told the limits of every record read here, so that they follow the volume (_io_limiters.ts). */
  #limiters: IoLimiters;

  constructor(
    engine: Engine,
    access: VolumeAccess | null,
    pins: PagePins,
    limiters: IoLimiters,
  ) {
    this.#engine = engine;
    this.#access = access;
    this.#pins = pins;
    this.#limiters = limiters;
  }

  /** The open instance of `name`, opened on first use. */
  open(name: string): Promise<Volume> {
    validateName(name, "volume");
    let volume = this.#volumes.get(name);
    if (volume === undefined) {
      volume = (async () => {
        const key = recordKey.volume(name);
        const entry = await this.#engine.getMeta(key);
        if (entry === null) throw new NotFoundError(`Cannot open volume "${name}": no such volume`);
        const { header, map } = await decodeRecord<VolumeHeader>(this.#engine, entry.value);
        this.#limiters.note(name, header, entry.version);
        return new Volume(this.#engine, header, map, entry.version, { pins: this.#pins });
      })();
      this.#volumes.set(name, volume);
      volume.catch(() => this.#volumes.delete(name));
    }
    return volume;
  }

  /**
   * The open instance of `name`, once the write lease is here (in a cluster),
   * and only while its record names that lease (seed 10168806 with replacements
   * and declared losses: a holder taken over while cut off, back and not told,
   * read the record afresh and snapshotted the volume under the new holder,
   * whose writes then changed the snapshot).
   */
  async writable(name: string, purpose: "write" | "catalogue"): Promise<Volume> {
    validateName(name, "volume");
    await this.#access?.acquire(name, purpose);
    const opened = this.open(name);
    const volume = await opened;
    const lease = volume.header.lease;
    // A lease lost while the instance opened (moved, released) is no lease either.
    const held = this.#access === null ? undefined : this.#access.heldLease(name);
    const recorded = held === undefined ||
      (held !== null && lease?.holder === held.holder && lease.epoch === held.epoch);
    if (!recorded) {
      if (this.#volumes.get(name) === opened) this.#volumes.delete(name);
      throw new LeaseLostError(
        `Cannot change volume "${name}": its record names the write lease of ` +
          `${lease?.holder ?? "nobody"} at epoch ${lease?.epoch ?? 0}, not this node's`,
      );
    }
    return volume;
  }

  /** The open instance when it is current, else a fresh one read from the record now. */
  async readable(name: string): Promise<Volume> {
    validateName(name, "volume");
    if (this.#access === null || this.#access.isCurrent(name)) return await this.open(name);
    return await this.load(name);
  }

  /** A new instance read from the record now, not shared (see Store.loadVolume). */
  async load(
    name: string,
    options: { settled?: boolean; orphaned?: boolean } = {},
  ): Promise<Volume> {
    validateName(name, "volume");
    const entry = await this.#engine.getMeta(recordKey.volume(name));
    if (entry === null) throw new NotFoundError(`Cannot open volume "${name}": no such volume`);
    const { header, map } = await decodeRecord<VolumeHeader>(this.#engine, entry.value);
    this.#limiters.note(name, header, entry.version);
    const readView = options.settled === true && (header.lease?.holder ?? null) === null
      ? `${header.uid}@${header.lease?.epoch ?? 0}`
      : undefined;
    return new Volume(this.#engine, header, map, entry.version, {
      reader: true,
      readView,
      orphaned: options.orphaned,
      pins: this.#pins,
    });
  }

  /** Makes the record `bytes` at `version`, just written elsewhere, the open instance of `name`. */
  adopt(name: string, bytes: Uint8Array, version: number): Promise<Volume> {
    const volume = (async () => {
      const { header, map } = await decodeRecord<VolumeHeader>(this.#engine, bytes);
      this.#limiters.note(name, header, version);
      return new Volume(this.#engine, header, map, version, { pins: this.#pins });
    })();
    this.#volumes.set(name, volume);
    volume.catch(() => this.#volumes.get(name) === volume && this.#volumes.delete(name));
    return volume;
  }

  /** Forgets the open instance of `name`: the next open reads the record. */
  drop(name: string): void {
    this.#volumes.delete(name);
  }

  /** Every open instance (garbage collection marks their maps). */
  all(): Promise<Volume>[] {
    return [...this.#volumes.values()];
  }

  /** Makes every write to an open instance durable. */
  async flushAll(): Promise<void> {
    for (const volume of this.#volumes.values()) {
      await volume.then((v) => v.flush()).catch(() => {});
    }
  }
}
