/**
 * Garbage collection: mark every block and object that an image, snapshot or
 * volume references, then sweep the rest. Catalogue changes run meanwhile
 * (collector.ts): a reference that appears after the marks read the records
 * comes from a record written since, and every such change reports what it
 * references (`added`), or from an open volume (objects of its current
 * generation or a later one, always kept) or an upload (pinned blocks).
 * Nothing else creates references: a clone or snapshot copies its source's
 * references, and its source was either marked or written since.
 *
 * In a cluster other nodes change the catalogue without telling this one, so
 * three more rules hold: objects are listed before the marks (a volume created
 * elsewhere meanwhile owns nothing listed: its record precedes its objects);
 * a volume owns the objects of the oldest generation any mark saw and later
 * ones (a snapshot taken between two marks may be listed by neither); and a
 * volume open here is marked from its record as well as its instance (the
 * instance may have copied up, unflushed, what the record still names).
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

/** What catalogue changes referenced while a collection ran (they are kept). */
export interface GcAdded {
  blocks: Set<string>;
  objects: Set<string>;
  /** Volumes created meanwhile: all their objects. */
  uids: Set<string>;
}

/** Marks and sweeps; see the module doc for what the caller must provide. */
export async function collectGarbage(options: {
  engine: Engine;
  openVolumes: Volume[];
  pinned: (hash: string) => boolean;
  /** References of catalogue changes made since the collection started; kept. */
  added?: GcAdded;
  /** Sweep these blocks alone and no object (what a failed upload stored). */
  only?: ReadonlySet<string>;
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

  const markRecords = async () => {
    for (const prefix of ["image/", "snapshot/", "volume/"]) {
      for (const key of await engine.listMeta(prefix, { settled: true })) {
        const entry = await engine.getMeta(key);
        if (entry === null) continue;
        const { header, map } = await decodeRecord<VolumeHeader>(engine, entry.value);
        mark(map);
        if (prefix === "volume/") {
          // The oldest generation any mark saw: a snapshot taken between two marks may
          // be listed by neither, and then the generation it froze is kept as owned.
          const { uid, generation } = header;
          owners.set(uid, Math.min(owners.get(uid) ?? generation, generation));
        }
      }
    }
  };
  // Objects are listed before the marks read the records: a volume's record is
  // written before any of its objects, so the owner of every object listed is
  // marked (or was deleted). An object written later (a volume another node
  // creates meanwhile, whose record no mark saw) is not looked at.
  const listed: string[] = [];
  if (options.only === undefined) {
    for await (const name of engine.listObjects()) listed.push(name);
  }
  await markRecords();
  if (options.settle !== undefined) {
    await options.settle();
    await markRecords();
  }
  for (const volume of options.openVolumes) {
    mark(volume.mapSnapshot());
    const { uid, generation } = volume.header;
    owners.set(uid, Math.min(owners.get(uid) ?? generation, generation));
  }

  const added = options.added ?? { blocks: new Set(), objects: new Set(), uids: new Set() };
  const result = { liveBlocks: 0, liveObjects: 0, deletedBlocks: 0, deletedObjects: 0 };
  for await (const hash of options.only ?? engine.listBlocks()) {
    // The checks and the deletion start in one step: an upload pins a block
    // before it stores it, so none can come to rely on it in between.
    if (blocks.has(hash) || added.blocks.has(hash) || options.pinned(hash)) {
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
  for (const name of listed) {
    const { uid, generation } = parseObjectName(name);
    const owner = owners.get(uid);
    // A generation past the one marked: the volume was frozen (snapshot) since.
    const owned = owner !== undefined && generation >= owner;
    if (objects.has(name) || added.objects.has(name) || added.uids.has(uid) || owned) {
      result.liveObjects++;
    } else {
      await (options.deleteObject ?? ((name) => engine.deleteObject(name)))(name);
      result.deletedObjects++;
    }
  }
  await engine.flush();
  return result;
}
