/**
 * The store: the catalogue of images, volumes and snapshots of one node, over an
 * engine. Handlers and the NBD server call it; it never knows where bytes live.
 *
 * Its parts: images and their uploads (_images.ts), the open volume instances
 * (_volume_instances.ts), creating a volume (_new_volume.ts) and snapshots
 * (_snapshots.ts); it holds them together with the catalogue lock and the
 * garbage collector they share.
 */
import type { HashPool } from "../wasm/hash_pool.ts";
import type { Clock } from "./clock.ts";
import { systemClock } from "./system_env.ts";
import type { ByteRange, Engine } from "./engine.ts";
import { ConflictError } from "./errors.ts";
import type { FrozenView } from "./frozen_view.ts";
import { Collector, type GcPolicy } from "./collector.ts";
import type { GcResult } from "./gc.ts";
import { blockSizeDefault } from "./limits.ts";
import { Mutex } from "./_mutex.ts";
import type { Volume } from "./volume.ts";
import {
  type ImageInfo,
  type SnapshotInfo,
  type UploadResult,
  type UploadStatus,
  type VolumeInfo,
  volumeInfo,
} from "./infos.ts";
import { deleteRecord } from "./_catalogue_records.ts";
import { Images } from "./_images.ts";
import { checkSize, createVolume, type NewVolumeContext, randomUid } from "./_new_volume.ts";
import { PagePins } from "./_page_pins.ts";
import { migrateMaps } from "./_map_migration.ts";
import type { UploadFormat } from "./_image_formats.ts";
import { Snapshots } from "./_snapshots.ts";
import type { BlockMap } from "./block_map.ts";
import type { ChangeExtent, ChangeList } from "./changes.ts";
import { listChanges } from "./_volume_changes.ts";
import { flattenVolume, type LifecycleContext, rollbackVolume } from "./_lifecycle.ts";
import { OpenWriters } from "./_open_writers.ts";
import { type VolumeAccess, VolumeInstances } from "./_volume_instances.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

export type {
  GcPolicy,
  ImageInfo,
  SnapshotInfo,
  UploadResult,
  UploadStatus,
  VolumeAccess,
  VolumeInfo,
};

/** Options of the {@linkcode Store}. */
export interface StoreOptions {
  engine: Engine;
  pool: HashPool;
  blockSize?: number;
  /** Milliseconds after a deletion before garbage collection runs; default 1000. */
  gcDelayMs?: number;
  /** A cluster's say on volume access (its write leases); none on a single node. */
  access?: VolumeAccess;
  /** A cluster's garbage collection rules; none on a single node. */
  gcPolicy?: GcPolicy;
  /** The clock of the garbage collection timer; the system's unless told (a simulation). */
  clock?: Clock;
  /** Makes the uid of a new volume; 16 random bytes in hex unless told (a simulation). */
  newUid?: () => string;
}

/** Images, volumes and snapshots of one node. */
export class Store {
  readonly engine: Engine;
  readonly pool: HashPool;
  readonly blockSize: number;
  #images: Images;
  #volumes: VolumeInstances;
  #snapshots: Snapshots;
  /** Serializes catalogue changes (each one brief: a collection never holds it long). */
  #catalogue = new Mutex();
  #collector: Collector;
  /** Map pages being stored whose record is not written yet (_page_pins.ts). */
  #pins: PagePins;
  /** What createVolume works with. */
  #creation: NewVolumeContext;
  /** Connections that have a volume open for writing here (a rollback asks). */
  #writers = new OpenWriters();
  /** What rollback and flatten work with. */
  #lifecycle: LifecycleContext;

  constructor(options: StoreOptions) {
    this.engine = options.engine;
    this.pool = options.pool;
    this.blockSize = options.blockSize ?? blockSizeDefault;
    this.access = options.access ?? null;
    this.gcPolicy = options.gcPolicy ?? null;
    this.#pins = new PagePins((ids) => this.#collector.keep(ids));
    this.#volumes = new VolumeInstances(this.engine, this.access, this.#pins);
    this.#collector = new Collector({
      engine: this.engine,
      policy: this.gcPolicy,
      catalogue: this.#catalogue,
      openVolumes: () => this.#volumes.all(),
      // Asked only once a collection runs, by when #images (made below) exists.
      pinnedHere: (hash) => this.#images.pinned(hash) || this.#pins.has(hash),
      clock: options.clock ?? systemClock,
      delayMs: options.gcDelayMs ?? 1000,
      onError: (error) => log.error("garbage collection failed: {error}", { error: String(error) }),
    });
    const parts = {
      engine: this.engine,
      catalogue: this.#catalogue,
      collector: this.#collector,
      pins: this.#pins,
    };
    this.#images = new Images({ ...parts, pool: this.pool, blockSize: this.blockSize });
    this.#creation = { ...parts, blockSize: this.blockSize, newUid: options.newUid ?? randomUid };
    this.#snapshots = new Snapshots({ ...parts, volumes: this.#volumes });
    this.#lifecycle = { ...parts, pool: this.pool, volumes: this.#volumes, writers: this.#writers };
  }

  /** Stores the bytes of `body` as image `name`; visible only once whole (`format`: _image_formats.ts). */
  uploadImage(
    name: string,
    body: AsyncIterable<Uint8Array>,
    options: { expectedBytes?: number | null; format?: UploadFormat } = {},
  ): Promise<UploadResult> {
    return this.#images.upload(name, body, options);
  }

  /** Uploads under way, with their progress. */
  uploads(): UploadStatus[] {
    return this.#images.uploads();
  }

  /** Every image, by name. */
  listImages(): Promise<ImageInfo[]> {
    return this.#images.list();
  }

  /** One image. */
  imageInfo(name: string): Promise<ImageInfo> {
    return this.#images.info(name);
  }

  /** A read-only view of an image's bytes. */
  openImage(name: string): Promise<FrozenView> {
    return this.#images.open(name);
  }

  /** Deletes an image; volumes cloned from it keep their data. */
  deleteImage(name: string): Promise<void> {
    return this.#images.delete(name);
  }

  /**
   * Creates a volume: empty of `size` bytes, or a thin clone of an image or of a
   * snapshot (`VOLUME@SNAPSHOT`). No data is copied.
   */
  createVolume(
    request: { name: string; image?: string; snapshot?: string; size?: number },
  ): Promise<VolumeInfo> {
    return createVolume(this.#creation, request);
  }

  /** The open volume `name` (one instance per node, opened on first use). */
  openVolume(name: string): Promise<Volume> {
    return this.#volumes.open(name);
  }

  /**
   * The cluster's say on volume access (null on a single node): the write lease
   * to take before a write path opens a volume, and whether this node's open
   * instance is current (it holds the lease).
   */
  readonly access: VolumeAccess | null;

  /** The cluster's garbage collection rules (null on a single node). */
  readonly gcPolicy: GcPolicy | null;

  /** The volume `name` for writing: in a cluster, the write lease comes here first. */
  writableVolume(name: string, purpose: "write" | "catalogue" = "write"): Promise<Volume> {
    return this.#volumes.writable(name, purpose);
  }

  /**
   * The volume `name` for reading: the open instance when it is current, else
   * a fresh one read from the record now (the holder's last flushed state).
   */
  readableVolume(name: string): Promise<Volume> {
    return this.#volumes.readable(name);
  }

  /**
   * A new instance read from the record now, not shared (nobody writes through
   * it). `settled`: the caller makes sure nobody writes the volume while it
   * uses the instance, when the record names no lease holder (cluster/leases/
   * _idle_readers.ts); its reads then go under a view of the volume at its
   * lease epoch (Engine.readObject). `orphaned`: the record names a holder
   * that is gone without releasing it (Engine.readObject).
   */
  loadVolume(
    name: string,
    options: { settled?: boolean; orphaned?: boolean } = {},
  ): Promise<Volume> {
    return this.#volumes.load(name, options);
  }

  /**
   * Opens `name` from a record just written elsewhere (`bytes` at `version`), as
   * its open instance. (Its reads do not go under a view: with the holder's own
   * writes racing its reads, a view remembered copies older than what it wrote;
   * data-path simulation seed 41808.)
   */
  adoptVolume(name: string, bytes: Uint8Array, version: number): Promise<Volume> {
    return this.#volumes.adopt(name, bytes, version);
  }

  /** Forgets the open instance of `name` (its lease moved): the next open reads the record. */
  dropVolume(name: string): void {
    this.#volumes.drop(name);
  }

  /** Every volume, by name. */
  async listVolumes(): Promise<VolumeInfo[]> {
    const keys = await this.engine.listMeta("volume/");
    return await Promise.all(keys.map((key) => this.volumeInfo(key.slice("volume/".length))));
  }

  /** One volume, as its current instance sees it (with its lease, in a cluster). */
  async volumeInfo(name: string): Promise<VolumeInfo> {
    const volume = await this.readableVolume(name);
    return volumeInfo(volume.header, volume.mapSnapshot());
  }

  /** Grows volume `name` (or with `force` shrinks it: Volume.resize) where its lease is. */
  async resizeVolume(name: string, size: unknown, options: { force?: boolean } = {}) {
    const sizeBytes = checkSize(size);
    await (await this.writableVolume(name, "catalogue")).resize(sizeBytes, options);
    return await this.volumeInfo(name);
  }

  /**
   * Rolls volume `name` back to its snapshot `snapshot` (_lifecycle.ts): refused
   * while a connection here has it open for writing, or another live node holds
   * its lease, unless `force`.
   */
  rollbackVolume(
    name: string,
    snapshot: string,
    options: { force?: boolean } = {},
  ): Promise<VolumeInfo> {
    return rollbackVolume(this.#lifecycle, name, snapshot, options);
  }

  /** Makes the clone `name` independent of its origin (_lifecycle.ts); runs while it is in use. */
  flattenVolume(name: string): Promise<VolumeInfo & { flattenedBlocks: number }> {
    return flattenVolume(this.#lifecycle, name);
  }

  /**
   * Notes a connection that has volume `name` open for writing on this node
   * (an NBD connection to its export); the function returned notes its end.
   */
  noteWriter(name: string): () => void {
    return this.#writers.open(name);
  }

  /**
   * Deletes a volume. A volume with snapshots is kept unless `cascade`, which
   * deletes its snapshots too; clones of those snapshots keep their data.
   */
  async deleteVolume(name: string, options: { cascade?: boolean } = {}): Promise<void> {
    const volume = await this.writableVolume(name, "catalogue");
    await this.#catalogue.run(async () => {
      const snapshots = await this.engine.listMeta(`snapshot/${name}@`);
      if (snapshots.length > 0 && !options.cascade) {
        throw new ConflictError(
          `Cannot delete volume "${name}": it has ${snapshots.length} snapshot(s); ` +
            `delete them first or ask for cascade`,
        );
      }
      for (const key of snapshots) await deleteRecord(this.engine, "snapshot", key);
      await volume.delete();
      this.#volumes.drop(name);
    });
    log.info("deleted volume {volume}", { volume: name, cascade: options.cascade ?? false });
    this.#collector.schedule();
  }

  /**
   * The extents of volume `name` changed since its snapshot `since`, up to its
   * snapshot `until` or the live volume (_volume_changes.ts; granularity: a block).
   */
  listChanges(name: string, request: { since: string; until?: string }): Promise<ChangeList> {
    return listChanges({ engine: this.engine, volumes: this.#volumes }, {
      volume: name,
      ...request,
    });
  }

  /**
   * Which parts of `range` of volume `name` changed since `base`, the map of one
   * of its snapshots: from its open instance's map, with writes not flushed
   * yet. A cluster node without the write lease cannot know the holder's map,
   * and says all of `range` changed (a backup then copies more, never less).
   */
  async changedExtents(name: string, base: BlockMap, range: ByteRange): Promise<ChangeExtent[]> {
    if (this.access !== null && !this.access.isCurrent(name)) return [{ ...range, changed: true }];
    return (await this.openVolume(name)).changedExtents(base, range);
  }

  /** Takes an instant snapshot of a volume. */
  createSnapshot(volumeName: string, name: string): Promise<SnapshotInfo> {
    return this.#snapshots.create(volumeName, name);
  }

  /** Snapshots of a volume, by name. */
  listSnapshots(volumeName: string): Promise<SnapshotInfo[]> {
    return this.#snapshots.list(volumeName);
  }

  /** A read-only view of a snapshot's bytes. */
  openSnapshot(volumeName: string, name: string): Promise<FrozenView> {
    return this.#snapshots.open(volumeName, name);
  }

  /** Deletes a snapshot; clones made of it keep their data. */
  deleteSnapshot(volumeName: string, name: string): Promise<void> {
    return this.#snapshots.delete(volumeName, name);
  }

  /**
   * Blocks this node's uploads in progress rely on, and map pages being stored
   * whose record is not written yet (a cluster's GC asks every node).
   */
  pins(): string[] {
    return [...this.#images.pins(), ...this.#pins.list()];
  }

  /**
   * Rewrites maps written before maps had pages (_map_migration.ts): of images and snapshots,
   * and with `volumes` (where none is open: a single node before it serves) of volumes.
   */
  migrateMaps(options: { volumes: boolean }): Promise<number> {
    const prefixes = ["image/", "snapshot/", ...(options.volumes ? ["volume/"] : [])];
    return migrateMaps(this.engine, this.#pins, prefixes);
  }

  /** Deletes every block and object that nothing references. */
  collectGarbage(): Promise<GcResult> {
    return this.#collector.collect();
  }

  /** Makes every write to an open volume durable (a node about to stop or leave). */
  flushVolumes(): Promise<void> {
    return this.#volumes.flushAll();
  }

  /** Flushes every open volume and releases the engine and the hash pool. */
  async close(): Promise<void> {
    this.#collector.close();
    await this.flushVolumes();
    await this.engine.close();
    this.pool.close();
  }
}
