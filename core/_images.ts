/**
 * The images of one node: their records, the uploads under way (with the
 * blocks each one pins against garbage collection), and the path of one upload
 * from its bytes to its record.
 */
import type { HashPool } from "../wasm/hash_pool.ts";
import type { BlockMap } from "./block_map.ts";
import type { Collector } from "./collector.ts";
import type { PagePins } from "./_page_pins.ts";
import type { UploadFormat } from "./_image_formats.ts";
import { notWholeSectors, type RawDisk, rawDisk } from "./_upload_source.ts";
import type { Engine } from "./engine.ts";
import { BusyError, ConflictError, VersionMismatchError } from "./errors.ts";
import { FrozenView } from "./frozen_view.ts";
import { type ImageInfo, imageInfo, type UploadResult, type UploadStatus } from "./infos.ts";
import { ingest, newProgress } from "./ingest.ts";
import { sectorBytes, uploadsMax } from "./limits.ts";
import type { Mutex } from "./_mutex.ts";
import { validateName } from "./names.ts";
import { type ImageHeader, putRecord, recordKey } from "./records.ts";
import { deleteRecord, readRecord } from "./_catalogue_records.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

/** Options of {@linkcode Images}: the store's engine, pool, catalogue lock and collector. */
export interface ImagesOptions {
  engine: Engine;
  pool: HashPool;
  blockSize: number;
  /** The store's catalogue lock (held to write or delete a record). */
  catalogue: Mutex;
  collector: Collector;
  /** Pages being stored, kept by garbage collection (_page_pins.ts). */
  pins: PagePins;
  /** Where qcow2 uploads are spooled before conversion; the system's temporary directory when null. */
  spoolDir: string | null;
}

/** The images of one node and their uploads (Store.uploadImage and its kin). */
export class Images {
  #options: ImagesOptions;
  #uploads = new Map<string, UploadStatus & { pins: Set<string> }>();

  constructor(options: ImagesOptions) {
    this.#options = options;
  }

  /** Stores the bytes of `body` as image `name`; visible only once whole. */
  async upload(
    name: string,
    body: AsyncIterable<Uint8Array>,
    options: { expectedBytes?: number | null; format?: UploadFormat } = {},
  ): Promise<UploadResult> {
    const { engine, pool, blockSize, catalogue, collector } = this.#options;
    validateName(name, "image");
    if (this.#uploads.has(name)) {
      throw new ConflictError(`Cannot upload image "${name}": an upload of it is in progress`);
    }
    if (this.#uploads.size >= uploadsMax) {
      throw new BusyError(`Cannot upload image "${name}": ${uploadsMax} uploads are running`);
    }
    const expectedBytes = options.expectedBytes ?? null;
    const status: UploadStatus & { pins: Set<string> } = {
      name,
      startedAt: new Date().toISOString(),
      format: null,
      spooledBytes: 0,
      pins: new Set<string>(),
      ...newProgress(expectedBytes),
    };
    this.#uploads.set(name, status);
    // Where no collection asks this node for its pins (RADOS), its blocks are kept young.
    const stopKeeping = collector.keepYoung(() => [...status.pins]);
    const stored = new Set<string>();
    let committed = false;
    const what = `Cannot upload image "${name}"`;
    let disk: RawDisk | null = null;
    try {
      disk = await rawDisk(body, {
        format: options.format ?? "auto",
        expectedBytes,
        spoolDir: this.#options.spoolDir,
        what,
        onSpooled: (bytes) => status.spooledBytes = bytes,
      });
      status.format = disk.format;
      status.expectedBytes = disk.sizeBytes;
      const { map } = await ingest(disk.bytes, {
        engine,
        pool,
        blockSize,
        expectedBytes: disk.sizeBytes,
        pins: status.pins,
        stored,
        progress: status,
      });
      // A body without a Content-Length shows its size only at its end.
      if (map.sizeBytes % sectorBytes !== 0) {
        throw new TypeError(notWholeSectors(what, map.sizeBytes));
      }
      // Once more, all of them: a block a collection took meanwhile fails the upload here,
      // before a record names it.
      const gone = await collector.refresh([...status.pins]);
      if (gone.length > 0) {
        throw new ConflictError(
          `${what}: ${gone.length} of its blocks (${gone[0]}${gone.length > 1 ? ", ..." : ""}) ` +
            `were collected while it ran; upload it again`,
        );
      }
      const header: ImageHeader = { name, createdAt: new Date().toISOString() };
      const created = await catalogue.run(() => this.#commit(header, map));
      committed = true;
      const info = created ? imageInfo(header, map) : await this.info(name);
      log.info("stored image {image}: {bytes} bytes, {newBlocks} new blocks", {
        image: name,
        bytes: status.receivedBytes,
        newBlocks: status.newBlocks,
        newBytes: status.newBytes,
        created,
      });
      return { ...info, newBlocks: status.newBlocks, newBytes: status.newBytes, created };
    } finally {
      stopKeeping();
      await disk?.close();
      this.#uploads.delete(name);
      // A failed upload gives back the space of the blocks it stored at once (those
      // nothing else came to rely on); in a cluster, where another node's upload may
      // have found them stored, once they are older than the age rule allows.
      if (!committed && stored.size > 0) {
        collector.collectWhenOld(stored);
        await collector.collect(stored).catch((error) =>
          log.error("cannot free the blocks of failed upload {image}: {error}", {
            image: name,
            error: String(error),
          })
        );
      }
      collector.schedule();
    }
  }

  /** Uploads under way, with their progress. */
  uploads(): UploadStatus[] {
    return [...this.#uploads.values()].map(({ pins: _, ...status }) => ({ ...status }));
  }

  /** Hashes pinned by the uploads under way. */
  pins(): string[] {
    return [...new Set([...this.#uploads.values()].flatMap((upload) => [...upload.pins]))];
  }

  /** True when an upload under way relies on the block `hash`. */
  pinned(hash: string): boolean {
    return [...this.#uploads.values()].some((upload) => upload.pins.has(hash));
  }

  async #commit(header: ImageHeader, map: BlockMap): Promise<boolean> {
    const { engine, collector, pins } = this.#options;
    try {
      collector.track(map);
      await putRecord(engine, recordKey.image(header.name), { header, map }, 0, pins);
      return true;
    } catch (error) {
      if (!(error instanceof VersionMismatchError)) throw error;
      const existing = await readRecord<ImageHeader>(engine, "image", recordKey.image(header.name));
      if (existing.map.equals(map)) return false;
      throw new ConflictError(`Cannot upload image "${header.name}": it exists with other content`);
    }
  }

  /** Every image, by name. */
  async list(): Promise<ImageInfo[]> {
    const { engine } = this.#options;
    const keys = await engine.listMeta("image/");
    return await Promise.all(keys.map(async (key) => {
      const { header, map } = await readRecord<ImageHeader>(engine, "image", key);
      return imageInfo(header, map);
    }));
  }

  /** One image. */
  async info(name: string): Promise<ImageInfo> {
    validateName(name, "image");
    const { engine } = this.#options;
    const { header, map } = await readRecord<ImageHeader>(engine, "image", recordKey.image(name));
    return imageInfo(header, map);
  }

  /** A read-only view of an image's bytes. */
  async open(name: string): Promise<FrozenView> {
    validateName(name, "image");
    const { engine } = this.#options;
    const { map } = await readRecord<ImageHeader>(engine, "image", recordKey.image(name));
    return new FrozenView(engine, `image "${name}"`, map);
  }

  /** Deletes an image; volumes cloned from it keep their data. */
  async delete(name: string): Promise<void> {
    validateName(name, "image");
    const { engine, catalogue, collector } = this.#options;
    await catalogue.run(() => deleteRecord(engine, "image", recordKey.image(name)));
    log.info("deleted image {image}", { image: name });
    collector.schedule();
  }
}
