/**
 * The store: the catalogue of images, volumes and snapshots of one node, over an
 * engine. Handlers and the NBD server call it; it never knows where bytes live.
 *
 * Its parts (_store_parts.ts builds them): images and their uploads
 * (_images.ts), the open volume instances (_volume_instances.ts), creating a
 * volume (_new_volume.ts), the volumes' catalogue (_volume_catalogue.ts),
 * rollback and flatten (_lifecycle.ts) and snapshots (_snapshots.ts); this
 * file is their front door, with the garbage collector they share.
 */
import type { HashPool } from "../wasm/hash_pool.ts";
import type { ByteRange, Engine } from "./engine.ts";
import type { FrozenView } from "./frozen_view.ts";
import type { GcPolicy } from "./collector.ts";
import type { GcResult } from "./gc.ts";
import type { Volume } from "./volume.ts";
import type { ImageInfo, SnapshotInfo, UploadResult, UploadStatus, VolumeInfo } from "./infos.ts";
import { createVolume } from "./_new_volume.ts";
import { migrateMaps } from "./_map_migration.ts";
import type { UploadFormat } from "./_image_formats.ts";
import type { BlockMap } from "./block_map.ts";
import type { ChangeExtent, ChangeList } from "./changes.ts";
import { flattenVolume, rollbackVolume } from "./_lifecycle.ts";
import type { IoLimiter } from "./io_limiter.ts";
import type { VolumeAccess } from "./_volume_instances.ts";
import { type StoreOptions, type StoreParts, storeParts } from "./_store_parts.ts";

export type {
  GcPolicy,
  ImageInfo,
  SnapshotInfo,
  StoreOptions,
  UploadResult,
  UploadStatus,
  VolumeAccess,
  VolumeInfo,
};

/** Images, volumes and snapshots of one node. */
export class Store {
  readonly engine: Engine;
  readonly pool: HashPool;
  readonly blockSize: number;
  /**
   * The cluster's say on volume access (null on a single node): the write lease
   * to take before a write path opens a volume, and whether this node's open
   * instance is current (it holds the lease).
   */
  readonly access: VolumeAccess | null;
  /** The cluster's garbage collection rules (null on a single node). */
  readonly gcPolicy: GcPolicy | null;
  #parts: StoreParts;

  constructor(options: StoreOptions) {
    this.engine = options.engine;
    this.pool = options.pool;
    this.#parts = storeParts(options);
    this.blockSize = this.#parts.blockSize;
    this.access = this.#parts.access;
    this.gcPolicy = this.#parts.gcPolicy;
  }

  /** Stores the bytes of `body` as image `name`; visible only once whole (`format`: _image_formats.ts). */
  uploadImage(
    name: string,
    body: AsyncIterable<Uint8Array>,
    options: { expectedBytes?: number | null; format?: UploadFormat } = {},
  ): Promise<UploadResult> {
    return this.#parts.images.upload(name, body, options);
  }

  /** Uploads under way, with their progress. */
  uploads(): UploadStatus[] {
    return this.#parts.images.uploads();
  }

  /** Every image, by name. */
  listImages(): Promise<ImageInfo[]> {
    return this.#parts.images.list();
  }

  /** One image. */
  imageInfo(name: string): Promise<ImageInfo> {
    return this.#parts.images.info(name);
  }

  /** A read-only view of an image's bytes. */
  openImage(name: string): Promise<FrozenView> {
    return this.#parts.images.open(name);
  }

  /** Deletes an image; volumes cloned from it keep their data. */
  deleteImage(name: string): Promise<void> {
    return this.#parts.images.delete(name);
  }

  /**
   * Creates a volume: empty of `size` bytes, or a thin clone of an image or of a
   * snapshot (`VOLUME@SNAPSHOT`). No data is copied.
   */
  createVolume(
    request: { name: string; image?: string; snapshot?: string; size?: number; qos?: unknown },
  ): Promise<VolumeInfo> {
    return createVolume(this.#parts.creation, request);
  }

  /** The open volume `name` (one instance per node, opened on first use). */
  openVolume(name: string): Promise<Volume> {
    return this.#parts.volumes.open(name);
  }

  /** The volume `name` for writing: in a cluster, the write lease comes here first. */
  writableVolume(name: string, purpose: "write" | "catalogue" = "write"): Promise<Volume> {
    return this.#parts.volumes.writable(name, purpose);
  }

  /**
   * The volume `name` for reading: the open instance when it is current, else
   * a fresh one read from the record now (the holder's last flushed state).
   */
  readableVolume(name: string): Promise<Volume> {
    return this.#parts.volumes.readable(name);
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
    return this.#parts.volumes.load(name, options);
  }

  /**
   * Opens `name` from a record just written elsewhere (`bytes` at `version`), as
   * its open instance. (Its reads do not go under a view: with the holder's own
   * writes racing its reads, a view remembered copies older than what it wrote;
   * data-path simulation seed 41808.)
   */
  adoptVolume(name: string, bytes: Uint8Array, version: number): Promise<Volume> {
    return this.#parts.volumes.adopt(name, bytes, version);
  }

  /** Forgets the open instance of `name` (its lease moved): the next open reads the record. */
  dropVolume(name: string): void {
    this.#parts.volumes.drop(name);
  }

  /** Every volume, by name. */
  listVolumes(): Promise<VolumeInfo[]> {
    return this.#parts.catalogue.list();
  }

  /** One volume, as its current instance sees it (with its lease, in a cluster). */
  volumeInfo(name: string): Promise<VolumeInfo> {
    return this.#parts.catalogue.info(name);
  }

  /** Grows volume `name` (or with `force` shrinks it: Volume.resize) where its lease is. */
  resizeVolume(
    name: string,
    size: unknown,
    options: { force?: boolean } = {},
  ): Promise<VolumeInfo> {
    return this.#parts.catalogue.resize(name, size, options);
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
    return rollbackVolume(this.#parts.lifecycle, name, snapshot, options);
  }

  /** Makes the clone `name` independent of its origin (_lifecycle.ts); runs while it is in use. */
  flattenVolume(name: string): Promise<VolumeInfo & { flattenedBlocks: number }> {
    return flattenVolume(this.#parts.lifecycle, name);
  }

  /**
   * Notes a connection that has volume `name` open for writing on this node
   * (an NBD connection to its export); the function returned notes its end.
   */
  noteWriter(name: string): () => void {
    return this.#parts.writers.open(name);
  }

  /** How many connections have volume `name` open for writing on this node now (noteWriter). */
  writersOf(name: string): number {
    return this.#parts.writers.count(name);
  }

  /**
   * Sets the I/O limits of volume `name` (core/qos.ts) where its lease is: to
   * `qos`, or with `merge` to its current ones patched by `qos` (a JSON merge
   * patch: null removes a limit). Connections to it on this node follow at
   * once; on another node, once it reads the record (it takes the lease, or
   * opens the volume).
   */
  setVolumeQos(
    name: string,
    qos: unknown,
    options: { merge?: boolean } = {},
  ): Promise<VolumeInfo> {
    return this.#parts.catalogue.setQos(name, qos, options);
  }

  /**
   * The I/O limiter of volume `name` on this node, shared by every connection
   * to it here and kept to the limits of its record (io_limiter.ts).
   */
  ioLimiter(name: string): IoLimiter {
    return this.#parts.limiters.of(name);
  }

  /**
   * Deletes a volume. A volume with snapshots is kept unless `cascade`, which
   * deletes its snapshots too; clones of those snapshots keep their data.
   */
  deleteVolume(name: string, options: { cascade?: boolean } = {}): Promise<void> {
    return this.#parts.catalogue.delete(name, options);
  }

  /**
   * The extents of volume `name` changed since its snapshot `since`, up to its
   * snapshot `until` or the live volume (_volume_changes.ts; granularity: a block).
   */
  listChanges(name: string, request: { since: string; until?: string }): Promise<ChangeList> {
    return this.#parts.catalogue.changes(name, request);
  }

  /**
   * Which parts of `range` of volume `name` changed since `base`, the map of one
   * of its snapshots: from its open instance's map, with writes not flushed
   * yet. A cluster node without the write lease cannot know the holder's map,
   * and says all of `range` changed (a backup then copies more, never less).
   */
  changedExtents(name: string, base: BlockMap, range: ByteRange): Promise<ChangeExtent[]> {
    return this.#parts.catalogue.changedExtents(name, base, range);
  }

  /** Takes an instant snapshot of a volume. */
  createSnapshot(volumeName: string, name: string): Promise<SnapshotInfo> {
    return this.#parts.snapshots.create(volumeName, name);
  }

  /** Snapshots of a volume, by name. */
  listSnapshots(volumeName: string): Promise<SnapshotInfo[]> {
    return this.#parts.snapshots.list(volumeName);
  }

  /** A read-only view of a snapshot's bytes. */
  openSnapshot(volumeName: string, name: string): Promise<FrozenView> {
    return this.#parts.snapshots.open(volumeName, name);
  }

  /** Deletes a snapshot; clones made of it keep their data. */
  deleteSnapshot(volumeName: string, name: string): Promise<void> {
    return this.#parts.snapshots.delete(volumeName, name);
  }

  /**
   * Blocks this node's uploads in progress rely on, and map pages being stored
   * whose record is not written yet (a cluster's GC asks every node).
   */
  pins(): string[] {
    return [...this.#parts.images.pins(), ...this.#parts.pins.list()];
  }

  /**
   * Rewrites maps written before maps had pages (_map_migration.ts): of images and snapshots,
   * and with `volumes` (where none is open: a single node before it serves) of volumes.
   */
  migrateMaps(options: { volumes: boolean }): Promise<number> {
    const prefixes = ["image/", "snapshot/", ...(options.volumes ? ["volume/"] : [])];
    return migrateMaps(this.engine, this.#parts.pins, prefixes);
  }

  /** Deletes every block and object that nothing references. */
  collectGarbage(): Promise<GcResult> {
    return this.#parts.collector.collect();
  }

  /** Makes every write to an open volume durable (a node about to stop or leave). */
  flushVolumes(): Promise<void> {
    return this.#parts.volumes.flushAll();
  }

  /** Flushes every open volume and releases the engine and the hash pool. */
  async close(): Promise<void> {
    this.#parts.collector.close();
    await this.flushVolumes();
    await this.engine.close();
    this.pool.close();
  }
}
