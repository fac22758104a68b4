/**
 * The changes of a volume as a list (the HTTP API's and the CLI's): between
 * two of its snapshots from their stored maps, reading only the map pages that
 * differ (map_store.ts `diffMaps`); or since a snapshot up to the live volume,
 * comparing the snapshot's map with the volume's map in memory now.
 */
import { type ChangeList, mergeChanged } from "./changes.ts";
import type { Engine } from "./engine.ts";
import { NotFoundError } from "./errors.ts";
import { changeExtentsMax } from "./limits.ts";
import { diffMaps, enginePages, mapShape } from "./map_store.ts";
import { validateName } from "./names.ts";
import { decodeRecord, recordKey, recordMapBytes, type SnapshotHeader } from "./records.ts";
import type { VolumeInstances } from "./_volume_instances.ts";

/** What {@linkcode listChanges} works with: the store's engine and its volume instances. */
export interface ChangesContext {
  engine: Engine;
  volumes: VolumeInstances;
}

/**
 * The extents of volume `request.volume` that changed since its snapshot
 * `since`: up to its snapshot `until`, or without one up to the live volume
 * (its map in memory at the node that holds it, with writes not flushed yet;
 * elsewhere in a cluster, its last flush).
 */
export async function listChanges(
  context: ChangesContext,
  request: { volume: string; since: string; until?: string },
): Promise<ChangeList> {
  const { engine, volumes } = context;
  const volume = validateName(request.volume, "volume");
  const since = validateName(request.since, "snapshot");
  const until = request.until === undefined ? null : validateName(request.until, "snapshot");
  const base = await snapshotRecord(engine, volume, since);
  let shape, indexes;
  if (until === null) {
    const map = (await volumes.readable(volume)).mapSnapshot();
    const { map: frozen } = await decodeRecord<SnapshotHeader>(engine, base);
    shape = map;
    indexes = map.changedSince(frozen);
  } else {
    const later = await snapshotRecord(engine, volume, until);
    const [a, b] = [recordMapBytes(base), recordMapBytes(later)];
    shape = mapShape(b);
    const sameShape = mapShape(a).sizeBytes === shape.sizeBytes;
    if (sameShape) indexes = diffMaps(a, b, enginePages(engine));
    else {
      // Resized in between: diffMaps compares maps of one shape; load both instead.
      const [{ map: before }, { map: after }] = await Promise.all(
        [base, later].map((bytes) => decodeRecord<SnapshotHeader>(engine, bytes)),
      );
      indexes = after.changedSince(before);
    }
  }
  const extents = await mergeChanged(indexes, shape, changeExtentsMax);
  return {
    volume,
    since,
    until,
    size: shape.sizeBytes,
    blockSize: shape.blockSize,
    changedBytes: extents.reduce((sum, extent) => sum + extent.length, 0),
    extents,
  };
}

/** The stored record of snapshot `volume@name`; NotFoundError when there is none. */
async function snapshotRecord(engine: Engine, volume: string, name: string): Promise<Uint8Array> {
  const entry = await engine.getMeta(recordKey.snapshot(volume, name));
  if (entry === null) {
    throw new NotFoundError(`Cannot find snapshot "${volume}@${name}": no such snapshot`);
  }
  return entry.value;
}
