/**
 * Reads of volumes nobody holds the write lease of (a fresh clone a VM boots
 * from reads long before its first write): one reader instance per volume,
 * loaded from the record and reused, instead of a record read per request.
 *
 * The record says who may be reading it that way: a node registers itself in
 * `lease.readers` (a compare-and-set that holds only while nobody holds the
 * lease, at the epoch it read) before it keeps a reader. Nothing else changes a
 * volume without taking its lease, and the node taking it reads the readers in
 * the same compare-and-set that clears them, tells each to drop its reader, and
 * waits before it writes until each answered or its reader ran out (_lease_moves.ts).
 * So a reader is used only while:
 * - the record still listed this node at that epoch within `validMs` of now
 *   (monotonic clock, from when the record read started; read again in the
 *   background before that runs out), and
 * - this node's fence of the volume is not above that epoch (a lease is being
 *   taken: read the record again).
 * A registration that fails (no metadata quorum, too many readers) only means
 * reads go to the record each time, as before.
 */
import type { Clock, Store, Volume } from "../../core/mod.ts";
import {
  decodeRecordHeader,
  recordKey,
  type VolumeHeader,
  withRecordHeader,
} from "../../core/records.ts";
import type { ClusterEngine } from "../cluster_engine.ts";

/** Readers kept at once (each holds its volume's map); the least recently loaded goes first. */
export const idleReadersMax = 1024;
/** Nodes one volume record lists as readers; more read the record each time. */
export const recordReadersMax = 32;

interface Reader {
  volume: Volume;
  uid: string;
  /** The lease epoch of the record this node registered at. */
  epoch: number;
  validUntil: number;
}

/** The record changed under a registration: give up quietly. */
class NotRegistered extends Error {
  override name = "NotRegistered";
}

/** The readers of unheld volumes at one node; see the module doc. */
export class IdleReaders {
  #store: () => Store;
  #engine: ClusterEngine;
  #clock: Clock;
  #validMs: number;
  #readers = new Map<string, Reader>();
  #refreshing = new Set<string>();
  /** Volumes whose registration as a reader is under way. */
  #registering = new Set<string>();
  /** Bumped by forget(): a load that started before must not be kept. */
  #generation = 0;

  constructor(store: () => Store, engine: ClusterEngine, clock: Clock, validMs: number) {
    this.#store = store;
    this.#engine = engine;
    this.#clock = clock;
    this.#validMs = validMs;
  }

  /** How long a reader lasts without reading its record again. */
  get validMs(): number {
    return this.#validMs;
  }

  /** The reader of `name` when one is valid now; null when the record must be read. */
  async valid(name: string): Promise<Volume | null> {
    const reader = this.#readers.get(name);
    if (reader === undefined) return null;
    const left = reader.validUntil - this.#clock.now();
    if (left <= 0 || await this.#fenceOf(reader.uid) > reader.epoch) {
      if (this.#readers.get(name) === reader) this.#readers.delete(name);
      return null;
    }
    if (left < this.#validMs / 2 && !this.#refreshing.has(name)) {
      this.#refreshing.add(name);
      this.#refresh(name, reader).catch(() => {}).finally(() => this.#refreshing.delete(name));
    }
    return reader.volume;
  }

  /**
   * Reads the record of `name`; when nobody holds the volume, registers this
   * node as a reader and keeps the instance. Returns the instance and holder.
   */
  async load(name: string): Promise<{ volume: Volume; holder: string | null }> {
    const generation = this.#generation;
    const started = this.#clock.now();
    const volume = await this.#store().loadVolume(name, { settled: true });
    const holder = volume.lease?.holder ?? null;
    if (holder !== null) {
      this.#readers.delete(name);
      return { volume, holder };
    }
    const epoch = volume.lease?.epoch ?? 0;
    if (volume.lease?.readers?.includes(this.#engine.selfId) === true) {
      await this.#keep(name, volume, epoch, started, generation);
    } else if (!this.#registering.has(name)) {
      // This read is served from the record just read, as any read without a
      // reader is; the reader is kept once the registration is in the record
      // (a VM's first read does not wait for a compare-and-set).
      this.#registering.add(name);
      this.#register(name, epoch)
        .then((listed) => listed ? this.#keep(name, volume, epoch, started, generation) : null)
        .catch(() => {})
        .finally(() => this.#registering.delete(name));
    }
    return { volume, holder };
  }

  /** Keeps `volume` as the reader of `name` unless it was forgotten or fenced since `generation`. */
  async #keep(
    name: string,
    volume: Volume,
    epoch: number,
    started: number,
    generation: number,
  ): Promise<void> {
    const uid = volume.header.uid;
    const fence = await this.#fenceOf(uid);
    if (generation !== this.#generation || fence > epoch) return;
    this.#readers.delete(name); // the newest goes last: the oldest is evicted first
    if (this.#readers.size >= idleReadersMax) {
      this.#readers.delete(this.#readers.keys().next().value!);
    }
    this.#readers.set(name, { volume, uid, epoch, validUntil: started + this.#validMs });
  }

  /** The volume changed hands (or was deleted): read its record on the next read. */
  forget(name: string): void {
    this.#readers.delete(name);
    this.#generation++;
  }

  /** Reads the record again: still unheld at the epoch and listing this node extends the reader. */
  async #refresh(name: string, reader: Reader): Promise<void> {
    const started = this.#clock.now();
    const volume = await this.#store().loadVolume(name);
    const lease = volume.lease;
    const still = (lease?.holder ?? null) === null && (lease?.epoch ?? 0) === reader.epoch &&
      lease?.readers?.includes(this.#engine.selfId) === true;
    if (this.#readers.get(name) !== reader) return;
    if (still) reader.validUntil = started + this.#validMs;
    else this.#readers.delete(name);
  }

  /** Adds this node to the record's readers while nobody holds it at `epoch`; true when listed. */
  async #register(name: string, epoch: number): Promise<boolean> {
    const self = this.#engine.selfId;
    try {
      await this.#engine.proposer.change(recordKey.volume(name), (record) => {
        if (record.value === null) throw new NotRegistered();
        const header = decodeRecordHeader<VolumeHeader>(record.value);
        const lease = header.lease ?? { holder: null, epoch: 0 };
        const readers = lease.readers ?? [];
        if (lease.holder !== null || lease.epoch !== epoch) throw new NotRegistered();
        if (readers.includes(self)) return record; // listed already: nothing to write
        if (readers.length >= recordReadersMax) throw new NotRegistered();
        return {
          version: record.version + 1,
          value: withRecordHeader(record.value, {
            ...header,
            lease: { holder: null, epoch, readers: [...readers, self] },
          }),
        };
      });
      return true;
    } catch (error) {
      if (error instanceof NotRegistered) return false;
      throw error;
    }
  }

  #fenceOf(uid: string): Promise<number> {
    return this.#engine.replica.fences.epoch(uid);
  }
}
