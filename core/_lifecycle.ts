/**
 * A volume's lifecycle past its creation: rolling it back to one of its
 * snapshots, and flattening a clone so that it no longer depends on its origin.
 *
 * Rollback makes the snapshot's map the volume's (pages shared, nothing
 * copied) in a new generation, so that the objects the volume owned and the
 * snapshot does not name become garbage (gc.ts), and what the snapshot names
 * is copied up before it changes. It holds the catalogue lock, so a collection
 * on this node keeps what the snapshot names (Collector.track), and it checks
 * afterwards that the snapshot is still there: a deletion on another node
 * between the read and the volume's record would leave the volume naming
 * blocks no record named to that node's collection (the argument of
 * _new_volume.ts checkSourceKept), so the volume goes back to its map.
 *
 * Flatten: a clone of a snapshot names objects of another volume (the
 * snapshot's, frozen); their reads then go through that volume's objects and,
 * in a cluster, its lease. Flatten stores each one's bytes as a content block
 * (deduplicated like any block: a block already stored is not stored again)
 * and points the entry at it, so the clone names only content blocks and its
 * own objects. The blocks are pinned (_page_pins.ts) from before they are
 * stored until the record naming them is written, so a collection running
 * meanwhile keeps them. Content blocks (an image's) were the clone's own
 * references already: nothing to do for them.
 */
import type { HashPool } from "../wasm/hash_pool.ts";
import { toHex } from "../wasm/to_hex.ts";
import { bytesEqual, parseObjectName } from "./block_map.ts";
import type { Collector } from "./collector.ts";
import type { Engine } from "./engine.ts";
import { ConflictError, NotFoundError } from "./errors.ts";
import { type VolumeInfo, volumeInfo } from "./infos.ts";
import { readEntry } from "./map_io.ts";
import type { Mutex } from "./_mutex.ts";
import { validateName } from "./names.ts";
import type { OpenWriters } from "./_open_writers.ts";
import type { PagePins } from "./_page_pins.ts";
import { decodeRecord, recordKey, type VolumeOrigin } from "./records.ts";
import type { VolumeInstances } from "./_volume_instances.ts";
import type { ObjectReplacement, Volume } from "./volume.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

/** Objects a flatten reads, hashes and stores at once (each a block-sized buffer). */
export const flattenBlocksInFlightMax = 4;

/** What rollback and flatten work with: the store's parts. */
export interface LifecycleContext {
  engine: Engine;
  pool: HashPool;
  /** The store's catalogue lock (held while a rollback reads its snapshot and writes). */
  catalogue: Mutex;
  collector: Collector;
  /** Blocks being stored whose record is not written yet, kept by garbage collection. */
  pins: PagePins;
  volumes: VolumeInstances;
  writers: OpenWriters;
}

/**
 * Rolls volume `name` back to its snapshot `snapshot` (Store.rollbackVolume).
 * Refused while a connection on this node has the volume open for writing, or
 * (in a cluster) while another live node holds its write lease, unless `force`:
 * then open connections read the snapshot's bytes from their next request on,
 * and a lease held elsewhere moves here (its holder's connections are fenced).
 */
export async function rollbackVolume(
  context: LifecycleContext,
  name: string,
  snapshot: string,
  options: { force?: boolean } = {},
): Promise<VolumeInfo> {
  const { engine, catalogue, collector, volumes, writers } = context;
  validateName(name, "volume");
  validateName(snapshot, "snapshot");
  const force = options.force === true;
  const refuseWriters = () => {
    const open = writers.count(name);
    if (open === 0 || force) return;
    throw new ConflictError(
      `Cannot roll volume "${name}" back to snapshot "${snapshot}": ${open} NBD ` +
        `connection(s) on this node have it open for writing (a VM may be running on it); ` +
        `disconnect them first, or force`,
    );
  };
  refuseWriters();
  const volume = await volumes.writable(name, force ? "write" : "catalogue");
  const key = recordKey.snapshot(name, snapshot);
  const info = await catalogue.run(async () => {
    refuseWriters(); // a connection may have opened while the lease came here
    const read = await engine.getMeta(key);
    if (read === null) {
      throw new NotFoundError(
        `Cannot roll volume "${name}" back: it has no snapshot "${snapshot}"`,
      );
    }
    const { map } = await decodeRecord(engine, read.value);
    collector.track(map);
    const before = await volume.replaceMap(map);
    const now = await engine.getMeta(key);
    if (now === null || !bytesEqual(now.value, read.value)) {
      collector.track(before);
      await volume.replaceMap(before);
      throw new ConflictError(
        `Cannot roll volume "${name}" back to snapshot "${snapshot}": the snapshot was deleted ` +
          `meanwhile; the volume keeps the data it had`,
      );
    }
    return volumeInfo(volume.header, volume.mapSnapshot());
  });
  log.info("rolled volume {volume} back to snapshot {snapshot}", {
    volume: name,
    snapshot,
    sizeBytes: info.size,
    force,
  });
  return info;
}

/**
 * Flattens volume `name` (Store.flattenVolume): afterwards its map names no
 * object of another volume, and its header no origin. Runs while the volume is
 * in use: entries written meanwhile keep what was written.
 */
export async function flattenVolume(
  context: LifecycleContext,
  name: string,
): Promise<VolumeInfo & { flattenedBlocks: number }> {
  const volume = await context.volumes.writable(name, "catalogue");
  const releases: (() => void)[] = [];
  try {
    const changes = await blocksOfForeignObjects(context, volume, releases);
    const replaced = await volume.replaceObjects(changes, flattenedOrigin(volume.header.origin));
    log.info("flattened volume {volume}: {blocks} objects of its origin now blocks", {
      volume: name,
      blocks: replaced,
      origin: volume.header.origin.kind,
    });
    return { ...volumeInfo(volume.header, volume.mapSnapshot()), flattenedBlocks: replaced };
  } finally {
    // Released once the record names the blocks (or failed to): a collection under
    // way keeps them then (PagePins tells the collector).
    for (const release of releases) release();
  }
}

/**
 * The entries of `volume` that name another volume's objects, each with the
 * content block (stored, pinned until `releases` run) or zero entry holding
 * the same bytes.
 */
async function blocksOfForeignObjects(
  context: LifecycleContext,
  volume: Volume,
  releases: (() => void)[],
): Promise<ObjectReplacement[]> {
  const { engine, pool, pins } = context;
  const map = volume.mapSnapshot();
  const uid = volume.header.uid;
  const foreign = [...map.references().objects].filter((name) => {
    const { uid: owner, index } = parseObjectName(name);
    if (owner === uid || index >= map.count) return false;
    const entry = map.get(index);
    return entry.kind === "object" && entry.name === name;
  });
  const changes: ObjectReplacement[] = [];
  const convert = async (name: string) => {
    const { index } = parseObjectName(name);
    const length = map.spanBytes(index);
    const read = new Uint8Array(length);
    // Another volume's object in a map is frozen (a snapshot froze it): read as such.
    await readEntry(engine, { kind: "object", name }, { offset: 0, length }, read);
    const { data, digest } = await pool.hashBlock(read, { detectZero: true });
    if (digest === null) {
      changes.push({ index, name, entry: { kind: "zero" } });
      return;
    }
    const hash = toHex(digest);
    releases.push(pins.pin([hash])); // before it is stored: see _page_pins.ts
    await engine.putBlock(hash, data);
    changes.push({ index, name, entry: { kind: "block", hash } });
  };
  let next = 0;
  const worker = async () => {
    while (next < foreign.length) await convert(foreign[next++]);
  };
  await Promise.all(Array.from({ length: flattenBlocksInFlightMax }, worker));
  return changes;
}

/** What a flattened volume says it came from. */
function flattenedOrigin(origin: VolumeOrigin): VolumeOrigin {
  return origin.kind === "image" || origin.kind === "snapshot"
    ? { kind: "flattened", from: origin }
    : origin;
}
