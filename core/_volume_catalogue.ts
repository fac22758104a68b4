/**
 * The volumes of one node's catalogue as the Store lists, describes, resizes,
 * limits and deletes them, and the changes a backup asks of them. Creating a
 * volume is _new_volume.ts; rolling back and flattening, _lifecycle.ts.
 */
import type { Collector } from "./collector.ts";
import type { ByteRange, Engine } from "./engine.ts";
import { ConflictError } from "./errors.ts";
import { type VolumeInfo, volumeInfo } from "./infos.ts";
import type { Mutex } from "./_mutex.ts";
import { checkSize } from "./_new_volume.ts";
import type { BlockMap } from "./block_map.ts";
import type { ChangeExtent, ChangeList } from "./changes.ts";
import { listChanges } from "./_volume_changes.ts";
import { deleteRecord } from "./_catalogue_records.ts";
import type { IoLimiters } from "./_io_limiters.ts";
import { checkQos, mergeQos } from "./qos.ts";
import type { VolumeAccess, VolumeInstances } from "./_volume_instances.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

/** Options of {@linkcode VolumeCatalogue}: the store's parts it works with. */
export interface VolumeCatalogueOptions {
  engine: Engine;
  /** The store's catalogue lock (held to delete a volume and its snapshots). */
  catalogue: Mutex;
  collector: Collector;
  volumes: VolumeInstances;
  /** The volumes' I/O limiters on this node (_io_limiters.ts). */
  limiters: IoLimiters;
  /** A cluster's say on volume access; null on a single node. */
  access: VolumeAccess | null;
}

/** The volumes of one node (Store.listVolumes and its kin say what each call does). */
export class VolumeCatalogue {
  #options: VolumeCatalogueOptions;

  constructor(options: VolumeCatalogueOptions) {
    this.#options = options;
  }

  /** Every volume, by name. */
  async list(): Promise<VolumeInfo[]> {
    const keys = await this.#options.engine.listMeta("volume/");
    return await Promise.all(keys.map((key) => this.info(key.slice("volume/".length))));
  }

  /** One volume, as its current instance sees it. */
  async info(name: string): Promise<VolumeInfo> {
    const volume = await this.#options.volumes.readable(name);
    return volumeInfo(volume.header, volume.mapSnapshot());
  }

  /** Grows volume `name` (or with `force` shrinks it) where its lease is. */
  async resize(name: string, size: unknown, options: { force?: boolean }): Promise<VolumeInfo> {
    const sizeBytes = checkSize(size);
    await (await this.#options.volumes.writable(name, "catalogue")).resize(sizeBytes, options);
    return await this.info(name);
  }

  /** Sets (or with `merge` patches) the I/O limits of volume `name` where its lease is. */
  async setQos(name: string, qos: unknown, options: { merge?: boolean }): Promise<VolumeInfo> {
    checkQos(qos); // bad limits are refused before the lease moves
    const volume = await this.#options.volumes.writable(name, "catalogue");
    await volume.changeQos((current) => options.merge ? mergeQos(current, qos) : checkQos(qos));
    this.#options.limiters.note(name, volume.header, volume.version);
    log.info("set I/O limits of volume {volume}", { volume: name, qos: volume.qos });
    return await this.info(name);
  }

  /** Deletes a volume (and with `cascade` its snapshots; else a volume with some is kept). */
  async delete(name: string, options: { cascade?: boolean }): Promise<void> {
    const { engine, catalogue, collector, volumes, limiters } = this.#options;
    const volume = await volumes.writable(name, "catalogue");
    await catalogue.run(async () => {
      const snapshots = await engine.listMeta(`snapshot/${name}@`);
      if (snapshots.length > 0 && !options.cascade) {
        throw new ConflictError(
          `Cannot delete volume "${name}": it has ${snapshots.length} snapshot(s); ` +
            `delete them first or ask for cascade`,
        );
      }
      for (const key of snapshots) await deleteRecord(engine, "snapshot", key);
      await volume.delete();
      volumes.drop(name);
      limiters.forget(name);
    });
    log.info("deleted volume {volume}", { volume: name, cascade: options.cascade ?? false });
    collector.schedule();
  }

  /** The extents of volume `name` changed between two of its snapshots (_volume_changes.ts). */
  changes(name: string, request: { since: string; until?: string }): Promise<ChangeList> {
    const { engine, volumes } = this.#options;
    return listChanges({ engine, volumes }, { volume: name, ...request });
  }

  /**
   * Which parts of `range` of volume `name` changed since `base`: from its open
   * instance's map, or all of it at a cluster node without the write lease.
   */
  async changedExtents(name: string, base: BlockMap, range: ByteRange): Promise<ChangeExtent[]> {
    const { access, volumes } = this.#options;
    if (access !== null && !access.isCurrent(name)) return [{ ...range, changed: true }];
    return (await volumes.open(name)).changedExtents(base, range);
  }
}
