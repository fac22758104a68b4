/** The snapshots of one node's volumes: taking them, listing, reading and deleting them. */
import type { Collector } from "./collector.ts";
import type { PagePins } from "./_page_pins.ts";
import type { Engine } from "./engine.ts";
import { ConflictError } from "./errors.ts";
import { FrozenView } from "./frozen_view.ts";
import { type SnapshotInfo, snapshotInfo } from "./infos.ts";
import type { Mutex } from "./_mutex.ts";
import { validateName } from "./names.ts";
import { putRecord, recordKey, type SnapshotHeader } from "./records.ts";
import { deleteRecord, readRecord } from "./_catalogue_records.ts";
import type { VolumeInstances } from "./_volume_instances.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

/** Options of {@linkcode Snapshots}: the store's engine, catalogue lock, collector and volumes. */
export interface SnapshotsOptions {
  engine: Engine;
  /** The store's catalogue lock (held to write or delete a record). */
  catalogue: Mutex;
  collector: Collector;
  /** Pages being stored, kept by garbage collection (_page_pins.ts). */
  pins: PagePins;
  volumes: VolumeInstances;
}

/** The snapshots of one node (Store.createSnapshot and its kin). */
export class Snapshots {
  #options: SnapshotsOptions;

  constructor(options: SnapshotsOptions) {
    this.#options = options;
  }

  /** Takes an instant snapshot of a volume. */
  async create(volumeName: string, name: string): Promise<SnapshotInfo> {
    const { engine, catalogue, collector, pins, volumes } = this.#options;
    validateName(name, "snapshot");
    const volume = await volumes.writable(volumeName, "catalogue");
    return await catalogue.run(async () => {
      const key = recordKey.snapshot(volumeName, name);
      if (await engine.getMeta(key) !== null) {
        throw new ConflictError(`Cannot create snapshot "${volumeName}@${name}": it exists`);
      }
      const header: SnapshotHeader = {
        volume: volumeName,
        name,
        createdAt: new Date().toISOString(),
      };
      // The record is written before any write can copy up what it names (see freeze).
      const map = await volume.freeze(async (frozen) => {
        collector.track(frozen);
        await putRecord(engine, key, { header, map: frozen, volume: volume.header.uid }, 0, pins);
      });
      log.info("took snapshot {volume}@{snapshot}", { volume: volumeName, snapshot: name });
      return snapshotInfo(header, map);
    });
  }

  /** Snapshots of a volume, by name. */
  async list(volumeName: string): Promise<SnapshotInfo[]> {
    const { engine, volumes } = this.#options;
    await volumes.open(volumeName);
    const keys = await engine.listMeta(`snapshot/${volumeName}@`);
    return await Promise.all(keys.map(async (key) => {
      const { header, map } = await readRecord<SnapshotHeader>(engine, "snapshot", key);
      return snapshotInfo(header, map);
    }));
  }

  /** A read-only view of a snapshot's bytes. */
  async open(volumeName: string, name: string): Promise<FrozenView> {
    const { engine } = this.#options;
    validateName(volumeName, "volume");
    validateName(name, "snapshot");
    const key = recordKey.snapshot(volumeName, name);
    const { map } = await readRecord<SnapshotHeader>(engine, "snapshot", key);
    return new FrozenView(engine, `snapshot "${volumeName}@${name}"`, map);
  }

  /** Deletes a snapshot; clones made of it keep their data. */
  async delete(volumeName: string, name: string): Promise<void> {
    const { engine, catalogue, collector } = this.#options;
    validateName(volumeName, "volume");
    validateName(name, "snapshot");
    const key = recordKey.snapshot(volumeName, name);
    await catalogue.run(() => deleteRecord(engine, "snapshot", key));
    log.info("deleted snapshot {volume}@{snapshot}", { volume: volumeName, snapshot: name });
    collector.schedule();
  }
}
