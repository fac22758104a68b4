/**
 * The store: the catalogue of images, volumes and snapshots of one node, over an
 * engine. Handlers and the NBD server call it; it never knows where bytes live.
 */
import type { HashPool } from "../wasm/hash_pool.ts";
import { toHex } from "../wasm/to_hex.ts";
import { BlockMap } from "./block_map.ts";
import type { Clock } from "./clock.ts";
import { systemClock } from "./system_env.ts";
import type { Engine } from "./engine.ts";
import { BusyError, ConflictError, NotFoundError, VersionMismatchError } from "./errors.ts";
import { FrozenView } from "./frozen_view.ts";
import { Collector, type GcPolicy } from "./collector.ts";
import type { GcResult } from "./gc.ts";
import { ingest, newProgress } from "./ingest.ts";
import { blockSizeDefault, uploadsMax, volumeSizeBytesMax } from "./limits.ts";
import { Mutex } from "./_mutex.ts";
import { parseSnapshotRef, validateName } from "./names.ts";
import {
  decodeRecord,
  encodeRecord,
  type ImageHeader,
  recordKey,
  type SnapshotHeader,
  type VolumeHeader,
  type VolumeOrigin,
} from "./records.ts";
import { Volume } from "./volume.ts";
import {
  type ImageInfo,
  imageInfo,
  type SnapshotInfo,
  snapshotInfo,
  type UploadResult,
  type UploadStatus,
  type VolumeInfo,
  volumeInfo,
} from "./infos.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

export type { GcPolicy, ImageInfo, SnapshotInfo, UploadResult, UploadStatus, VolumeInfo };

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
}

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
  #uploads = new Map<string, UploadStatus & { pins: Set<string> }>();
  #volumes = new Map<string, Promise<Volume>>();
  /** Serializes catalogue changes (each one brief: a collection never holds it long). */
  #catalogue = new Mutex();
  #collector: Collector;
  #newUid: () => string;

  constructor(options: StoreOptions) {
    this.engine = options.engine;
    this.pool = options.pool;
    this.blockSize = options.blockSize ?? blockSizeDefault;
    this.access = options.access ?? null;
    this.gcPolicy = options.gcPolicy ?? null;
    this.#collector = new Collector({
      engine: this.engine,
      policy: this.gcPolicy,
      catalogue: this.#catalogue,
      openVolumes: () => [...this.#volumes.values()],
      pinnedHere: (hash) => [...this.#uploads.values()].some((upload) => upload.pins.has(hash)),
      clock: options.clock ?? systemClock,
      delayMs: options.gcDelayMs ?? 1000,
      onError: (error) => log.error("garbage collection failed: {error}", { error: String(error) }),
    });
    this.#newUid = options.newUid ?? randomUid;
  }

  /** Stores the bytes of `body` as image `name`; visible only once whole. */
  async uploadImage(
    name: string,
    body: AsyncIterable<Uint8Array>,
    options: { expectedBytes?: number | null } = {},
  ): Promise<UploadResult> {
    validateName(name, "image");
    if (this.#uploads.has(name)) {
      throw new ConflictError(`Cannot upload image "${name}": an upload of it is in progress`);
    }
    if (this.#uploads.size >= uploadsMax) {
      throw new BusyError(`Cannot upload image "${name}": ${uploadsMax} uploads are running`);
    }
    const expectedBytes = options.expectedBytes ?? null;
    const status = {
      name,
      startedAt: new Date().toISOString(),
      pins: new Set<string>(),
      ...newProgress(expectedBytes),
    };
    this.#uploads.set(name, status);
    const stored = new Set<string>();
    let committed = false;
    try {
      const { map } = await ingest(body, {
        engine: this.engine,
        pool: this.pool,
        blockSize: this.blockSize,
        expectedBytes,
        pins: status.pins,
        stored,
        progress: status,
      });
      const header: ImageHeader = { name, createdAt: new Date().toISOString() };
      const created = await this.#catalogue.run(() => this.#commitImage(header, map));
      committed = true;
      const info = created ? imageInfo(header, map) : await this.imageInfo(name);
      log.info("stored image {image}: {bytes} bytes, {newBlocks} new blocks", {
        image: name,
        bytes: status.receivedBytes,
        newBlocks: status.newBlocks,
        newBytes: status.newBytes,
        created,
      });
      return { ...info, newBlocks: status.newBlocks, newBytes: status.newBytes, created };
    } finally {
      this.#uploads.delete(name);
      // A failed upload gives back the space of the blocks it stored at once (those
      // nothing else came to rely on); in a cluster, where another node's upload may
      // have found them stored, once they are older than the age rule allows.
      if (!committed && stored.size > 0) {
        this.#collector.collectWhenOld(stored);
        await this.#collector.collect(stored).catch((error) =>
          log.error("cannot free the blocks of failed upload {image}: {error}", {
            image: name,
            error: String(error),
          })
        );
      }
      this.#collector.schedule();
    }
  }

  /** Uploads under way, with their progress. */
  uploads(): UploadStatus[] {
    return [...this.#uploads.values()].map(({ pins: _, ...status }) => ({ ...status }));
  }

  async #commitImage(header: ImageHeader, map: BlockMap): Promise<boolean> {
    try {
      this.#collector.track(map);
      await this.engine.putMeta(recordKey.image(header.name), encodeRecord(header, map), 0);
      return true;
    } catch (error) {
      if (!(error instanceof VersionMismatchError)) throw error;
      const existing = await this.#readRecord<ImageHeader>("image", recordKey.image(header.name));
      if (existing.map.equals(map)) return false;
      throw new ConflictError(`Cannot upload image "${header.name}": it exists with other content`);
    }
  }

  /** Every image, by name. */
  async listImages(): Promise<ImageInfo[]> {
    const keys = await this.engine.listMeta("image/");
    return await Promise.all(keys.map(async (key) => {
      const { header, map } = await this.#readRecord<ImageHeader>("image", key);
      return imageInfo(header, map);
    }));
  }

  /** One image. */
  async imageInfo(name: string): Promise<ImageInfo> {
    validateName(name, "image");
    const { header, map } = await this.#readRecord<ImageHeader>("image", recordKey.image(name));
    return imageInfo(header, map);
  }

  /** A read-only view of an image's bytes. */
  async openImage(name: string): Promise<FrozenView> {
    validateName(name, "image");
    const { map } = await this.#readRecord<ImageHeader>("image", recordKey.image(name));
    return new FrozenView(this.engine, `image "${name}"`, map);
  }

  /** Deletes an image; volumes cloned from it keep their data. */
  async deleteImage(name: string): Promise<void> {
    validateName(name, "image");
    await this.#catalogue.run(() => this.#deleteRecord("image", recordKey.image(name)));
    log.info("deleted image {image}", { image: name });
    this.#collector.schedule();
  }

  /**
   * Creates a volume: empty of `size` bytes, or a thin clone of an image or of a
   * snapshot (`VOLUME@SNAPSHOT`). No data is copied.
   */
  async createVolume(
    request: { name: string; image?: string; snapshot?: string; size?: number },
  ): Promise<VolumeInfo> {
    const name = validateName(request.name, "volume");
    const sources = [request.image, request.snapshot, request.size].filter((s) => s !== undefined);
    if (sources.length !== 1) {
      throw new TypeError(
        `Cannot create volume "${name}": give exactly one of image, snapshot, size`,
      );
    }
    return await this.#catalogue.run(async () => {
      let map: BlockMap;
      let origin: VolumeOrigin;
      if (request.image !== undefined) {
        const image = validateName(request.image, "image");
        map = (await this.#readRecord("image", recordKey.image(image))).map.clone();
        origin = { kind: "image", image };
      } else if (request.snapshot !== undefined) {
        const { volume, snapshot } = parseSnapshotRef(request.snapshot);
        const key = recordKey.snapshot(volume, snapshot);
        map = (await this.#readRecord("snapshot", key)).map.clone();
        origin = { kind: "snapshot", volume, snapshot };
      } else {
        map = new BlockMap({ sizeBytes: checkSize(request.size), blockSize: this.blockSize });
        origin = { kind: "empty" };
      }
      const header: VolumeHeader = {
        name,
        uid: this.#newUid(),
        generation: 1,
        createdAt: new Date().toISOString(),
        origin,
      };
      this.#collector.track(map, header.uid);
      try {
        await this.engine.putMeta(recordKey.volume(name), encodeRecord(header, map), 0);
      } catch (error) {
        if (error instanceof VersionMismatchError) {
          throw new ConflictError(`Cannot create volume "${name}": it exists`);
        }
        throw error;
      }
      log.info("created volume {volume} ({origin})", {
        volume: name,
        uid: header.uid,
        origin: origin.kind === "image"
          ? `clone of image ${origin.image}`
          : origin.kind === "snapshot"
          ? `clone of snapshot ${origin.volume}@${origin.snapshot}`
          : "empty",
        sizeBytes: map.sizeBytes,
      });
      return volumeInfo(header, map);
    });
  }

  /** The open volume `name` (one instance per node, opened on first use). */
  openVolume(name: string): Promise<Volume> {
    validateName(name, "volume");
    let volume = this.#volumes.get(name);
    if (volume === undefined) {
      volume = (async () => {
        const key = recordKey.volume(name);
        const entry = await this.engine.getMeta(key);
        if (entry === null) throw new NotFoundError(`Cannot open volume "${name}": no such volume`);
        const { header, map } = decodeRecord<VolumeHeader>(entry.value);
        return new Volume(this.engine, header, map, entry.version);
      })();
      this.#volumes.set(name, volume);
      volume.catch(() => this.#volumes.delete(name));
    }
    return volume;
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
  async writableVolume(name: string, purpose: "write" | "catalogue" = "write"): Promise<Volume> {
    validateName(name, "volume");
    await this.access?.acquire(name, purpose);
    return await this.openVolume(name);
  }

  /**
   * The volume `name` for reading: the open instance when it is current, else
   * a fresh one read from the record now (the holder's last flushed state).
   */
  async readableVolume(name: string): Promise<Volume> {
    validateName(name, "volume");
    if (this.access === null || this.access.isCurrent(name)) return await this.openVolume(name);
    return await this.loadVolume(name);
  }

  /**
   * A new instance read from the record now, not shared (nobody writes through
   * it). `settled`: the caller makes sure nobody writes the volume while it
   * uses the instance, when the record names no lease holder (cluster/leases/
   * _idle_readers.ts); its reads then go under a view of the volume at its
   * lease epoch (Engine.readObject).
   */
  async loadVolume(name: string, options: { settled?: boolean } = {}): Promise<Volume> {
    validateName(name, "volume");
    const entry = await this.engine.getMeta(recordKey.volume(name));
    if (entry === null) throw new NotFoundError(`Cannot open volume "${name}": no such volume`);
    const { header, map } = decodeRecord<VolumeHeader>(entry.value);
    const readView = options.settled === true && (header.lease?.holder ?? null) === null
      ? `${header.uid}@${header.lease?.epoch ?? 0}`
      : undefined;
    return new Volume(this.engine, header, map, entry.version, { reader: true, readView });
  }

  /**
   * Opens `name` from a record just written elsewhere (`bytes` at `version`), as
   * its open instance. (Its reads do not go under a view: with the holder's own
   * writes racing its reads, a view remembered copies older than what it wrote;
   * data-path simulation seed 41808.)
   */
  adoptVolume(name: string, bytes: Uint8Array, version: number): Volume {
    const { header, map } = decodeRecord<VolumeHeader>(bytes);
    const volume = new Volume(this.engine, header, map, version);
    this.#volumes.set(name, Promise.resolve(volume));
    return volume;
  }

  /** Forgets the open instance of `name` (its lease moved): the next open reads the record. */
  dropVolume(name: string): void {
    this.#volumes.delete(name);
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
      for (const key of snapshots) await this.#deleteRecord("snapshot", key);
      await volume.delete();
      this.#volumes.delete(name);
    });
    log.info("deleted volume {volume}", { volume: name, cascade: options.cascade ?? false });
    this.#collector.schedule();
  }

  /** Takes an instant snapshot of a volume. */
  async createSnapshot(volumeName: string, name: string): Promise<SnapshotInfo> {
    validateName(name, "snapshot");
    const volume = await this.writableVolume(volumeName, "catalogue");
    return await this.#catalogue.run(async () => {
      const key = recordKey.snapshot(volumeName, name);
      if (await this.engine.getMeta(key) !== null) {
        throw new ConflictError(`Cannot create snapshot "${volumeName}@${name}": it exists`);
      }
      const header: SnapshotHeader = {
        volume: volumeName,
        name,
        createdAt: new Date().toISOString(),
      };
      // The record is written before any write can copy up what it names (see freeze).
      const map = await volume.freeze(async (frozen) => {
        this.#collector.track(frozen);
        await this.engine.putMeta(key, encodeRecord(header, frozen), 0);
      });
      log.info("took snapshot {volume}@{snapshot}", { volume: volumeName, snapshot: name });
      return snapshotInfo(header, map);
    });
  }

  /** Snapshots of a volume, by name. */
  async listSnapshots(volumeName: string): Promise<SnapshotInfo[]> {
    await this.openVolume(volumeName);
    const keys = await this.engine.listMeta(`snapshot/${volumeName}@`);
    return await Promise.all(keys.map(async (key) => {
      const { header, map } = await this.#readRecord<SnapshotHeader>("snapshot", key);
      return snapshotInfo(header, map);
    }));
  }

  /** A read-only view of a snapshot's bytes. */
  async openSnapshot(volumeName: string, name: string): Promise<FrozenView> {
    validateName(volumeName, "volume");
    validateName(name, "snapshot");
    const key = recordKey.snapshot(volumeName, name);
    const { map } = await this.#readRecord<SnapshotHeader>("snapshot", key);
    return new FrozenView(this.engine, `snapshot "${volumeName}@${name}"`, map);
  }

  /** Deletes a snapshot; clones made of it keep their data. */
  async deleteSnapshot(volumeName: string, name: string): Promise<void> {
    validateName(volumeName, "volume");
    validateName(name, "snapshot");
    const key = recordKey.snapshot(volumeName, name);
    await this.#catalogue.run(() => this.#deleteRecord("snapshot", key));
    log.info("deleted snapshot {volume}@{snapshot}", { volume: volumeName, snapshot: name });
    this.#collector.schedule();
  }

  /** Hashes pinned by this node's uploads in progress (a cluster's GC asks every node). */
  uploadPins(): string[] {
    return [...new Set([...this.#uploads.values()].flatMap((upload) => [...upload.pins]))];
  }

  /** Deletes every block and object that nothing references. */
  collectGarbage(): Promise<GcResult> {
    return this.#collector.collect();
  }

  /** Makes every write to an open volume durable (a node about to stop or leave). */
  async flushVolumes(): Promise<void> {
    for (const volume of this.#volumes.values()) {
      await volume.then((v) => v.flush()).catch(() => {});
    }
  }

  /** Flushes every open volume and releases the engine and the hash pool. */
  async close(): Promise<void> {
    this.#collector.close();
    await this.flushVolumes();
    await this.engine.close();
    this.pool.close();
  }

  async #readRecord<T>(kind: string, key: string): Promise<{ header: T; map: BlockMap }> {
    const entry = await this.engine.getMeta(key);
    if (entry === null) {
      throw new NotFoundError(
        `Cannot find ${kind} "${key.slice(kind.length + 1)}": no such ${kind}`,
      );
    }
    return decodeRecord<T>(entry.value);
  }

  async #deleteRecord(kind: string, key: string): Promise<void> {
    const entry = await this.engine.getMeta(key);
    if (entry === null) {
      throw new NotFoundError(
        `Cannot delete ${kind} "${key.slice(kind.length + 1)}": no such ${kind}`,
      );
    }
    await this.engine.deleteMeta(key, entry.version);
  }
}

function checkSize(size: unknown): number {
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
    throw new TypeError(`Cannot create volume: size must be a positive integer of bytes`);
  }
  if (size > volumeSizeBytesMax) {
    throw new RangeError(
      `Cannot create volume of ${size} bytes: the limit is ${volumeSizeBytesMax}`,
    );
  }
  return size;
}

function randomUid(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(16)));
}
