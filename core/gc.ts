/**
 * Garbage collection: mark every block and object that an image, snapshot or
 * volume references, then sweep the rest. The caller serializes it with every
 * catalogue change, so no reference appears between mark and sweep except
 * through an open volume (objects of its current generation, always kept) or an
 * upload (pinned blocks).
 */
import { parseObjectName } from "./block_map.ts";
import type { Engine } from "./engine.ts";
import { decodeRecord, type VolumeHeader } from "./records.ts";
import type { Volume } from "./volume.ts";

/** What a collection found and freed. */
export interface GcResult {
  liveBlocks: number;
  liveObjects: number;
  deletedBlocks: number;
  deletedObjects: number;
}

/** Marks and sweeps; see the module doc for what the caller must hold. */
export async function collectGarbage(options: {
  engine: Engine;
  openVolumes: Volume[];
  pinned: (hash: string) => boolean;
  /**
   * In a cluster: a pause after the first mark, then a second mark whose
   * references are added, so that a record written by another node while the
   * first mark ran (a clone of a source being deleted) still counts.
   */
  settle?: () => Promise<void>;
  /** Deletes a block, or keeps it (false) when it may still be in use (a cluster's age rule). */
  deleteBlock?: (hash: string) => Promise<boolean>;
  /** Deletes an unreferenced object everywhere (a cluster: nobody writes it, no lease needed). */
  deleteObject?: (name: string) => Promise<void>;
}): Promise<GcResult> {
  const { engine } = options;
  const blocks = new Set<string>();
  const objects = new Set<string>();
  const owners = new Map<string, number>();
  const mark = (map: { references(): { blocks: Set<string>; objects: Set<string> } }) => {
    const refs = map.references();
    for (const hash of refs.blocks) blocks.add(hash);
    for (const name of refs.objects) objects.add(name);
  };

  const open = new Map(options.openVolumes.map((volume) => [volume.name, volume]));
  const markRecords = async () => {
    for (const prefix of ["image/", "snapshot/", "volume/"]) {
      for (const key of await engine.listMeta(prefix)) {
        const volume = prefix === "volume/" ? open.get(key.slice(prefix.length)) : undefined;
        if (volume !== undefined) continue;
        const entry = await engine.getMeta(key);
        if (entry === null) continue;
        const { header, map } = decodeRecord<VolumeHeader>(entry.value);
        mark(map);
        if (prefix === "volume/") {
          owners.set(header.uid, Math.max(owners.get(header.uid) ?? 0, header.generation));
        }
      }
    }
  };
  await markRecords();
  if (options.settle !== undefined) {
    await options.settle();
    await markRecords();
  }
  for (const volume of open.values()) {
    mark(volume.mapSnapshot());
    owners.set(volume.header.uid, volume.header.generation);
  }

  const result = { liveBlocks: 0, liveObjects: 0, deletedBlocks: 0, deletedObjects: 0 };
  for await (const hash of engine.listBlocks()) {
    if (blocks.has(hash) || options.pinned(hash)) {
      result.liveBlocks++;
    } else if (options.deleteBlock === undefined) {
      await engine.deleteBlock(hash);
      result.deletedBlocks++;
    } else if (await options.deleteBlock(hash)) {
      result.deletedBlocks++;
    } else {
      result.liveBlocks++;
    }
  }
  for await (const name of engine.listObjects()) {
    const { uid, generation } = parseObjectName(name);
    if (objects.has(name) || owners.get(uid) === generation) {
      result.liveObjects++;
    } else {
      await (options.deleteObject ?? ((name) => engine.deleteObject(name)))(name);
      result.deletedObjects++;
    }
  }
  await engine.flush();
  return result;
}
