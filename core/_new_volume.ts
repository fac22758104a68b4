/**
 * Creating a volume: what it starts from (the map and origin its source gives:
 * an image, a snapshot or a size), its uid, and its first record.
 */
import { toHex } from "../wasm/to_hex.ts";
import { BlockMap, bytesEqual } from "./block_map.ts";
import type { Collector } from "./collector.ts";
import type { PagePins } from "./_page_pins.ts";
import type { Engine } from "./engine.ts";
import { ConflictError, NotFoundError, VersionMismatchError } from "./errors.ts";
import { type VolumeInfo, volumeInfo } from "./infos.ts";
import { sectorBytes, volumeSizeBytesMax } from "./limits.ts";
import type { Mutex } from "./_mutex.ts";
import { parseSnapshotRef, validateName } from "./names.ts";
import { checkQos, isUnlimited } from "./qos.ts";
import {
  decodeRecord,
  putRecord,
  recordKey,
  type VolumeHeader,
  type VolumeOrigin,
} from "./records.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

/**
 * The source of a new volume, as Store.createVolume is asked for it: an image
 * or a snapshot, or neither (empty); `size` is required for an empty volume
 * and may make a clone larger than its origin.
 */
export interface VolumeSource {
  image?: string;
  snapshot?: string;
  size?: number;
  /** I/O limits from the start (core/qos.ts); checked here. */
  qos?: unknown;
}

/** What {@linkcode createVolume} works with: the store's parts. */
export interface NewVolumeContext {
  engine: Engine;
  /** The store's catalogue lock (held to write the record). */
  catalogue: Mutex;
  collector: Collector;
  /** Pages being stored, kept by garbage collection (_page_pins.ts). */
  pins: PagePins;
  blockSize: number;
  newUid: () => string;
}

/** Creates the volume `request.name` from its source (see Store.createVolume). */
export async function createVolume(
  context: NewVolumeContext,
  request: { name: string } & VolumeSource,
): Promise<VolumeInfo> {
  const { engine, catalogue, collector, pins, blockSize, newUid } = context;
  const name = validateName(request.name, "volume");
  const sources = [request.image, request.snapshot].filter((s) => s !== undefined);
  if (sources.length > 1 || (sources.length === 0 && request.size === undefined)) {
    throw new TypeError(
      `Cannot create volume "${name}": give one of image, snapshot, size (size may go with ` +
        `an image or a snapshot, for a larger clone)`,
    );
  }
  const qos = request.qos === undefined ? {} : checkQos(request.qos);
  return await catalogue.run(async () => {
    const { map, origin, source } = await volumeStart(engine, request, blockSize);
    const header: VolumeHeader = {
      name,
      uid: newUid(),
      generation: 1,
      createdAt: new Date().toISOString(),
      origin,
      ...(isUnlimited(qos) ? {} : { qos }),
    };
    collector.track(map, header.uid);
    let version: number;
    try {
      const record = { header, map, volume: header.uid };
      version = await putRecord(engine, recordKey.volume(name), record, 0, pins);
    } catch (error) {
      if (error instanceof VersionMismatchError) {
        throw new ConflictError(`Cannot create volume "${name}": it exists`);
      }
      throw error;
    }
    if (source !== null) await checkSourceKept(engine, name, version, source);
    log.info("created volume {volume} ({origin})", {
      volume: name,
      uid: header.uid,
      origin: describeOrigin(origin),
      sizeBytes: map.sizeBytes,
    });
    return volumeInfo(header, map);
  });
}

/** The record a clone copied its map from, as it read it. */
interface CloneSource {
  kind: "image" | "snapshot";
  key: string;
  value: Uint8Array;
}

/** The map a new volume starts with (a copy of its source's) and where it came from. */
async function volumeStart(
  engine: Engine,
  source: VolumeSource,
  blockSize: number,
): Promise<{ map: BlockMap; origin: VolumeOrigin; source: CloneSource | null }> {
  const size = source.size === undefined ? undefined : checkSize(source.size);
  let read: { map: BlockMap; source: CloneSource };
  let origin: VolumeOrigin;
  if (source.image !== undefined) {
    const image = validateName(source.image, "image");
    read = await readSource(engine, "image", recordKey.image(image));
    origin = { kind: "image", image };
  } else if (source.snapshot !== undefined) {
    const { volume, snapshot } = parseSnapshotRef(source.snapshot);
    read = await readSource(engine, "snapshot", recordKey.snapshot(volume, snapshot));
    origin = { kind: "snapshot", volume, snapshot };
  } else {
    const map = new BlockMap({ sizeBytes: size!, blockSize });
    return { map, origin: { kind: "empty" }, source: null };
  }
  if (size === undefined || size === read.map.sizeBytes) return { ...read, origin };
  if (size < read.map.sizeBytes) {
    throw new RangeError(
      `Cannot create a volume of ${size} bytes from ${describeOrigin(origin)}: ` +
        `it has ${read.map.sizeBytes} bytes, and a clone may be larger, not smaller`,
    );
  }
  return { map: read.map.resized(size), origin, source: read.source };
}

async function readSource(
  engine: Engine,
  kind: "image" | "snapshot",
  key: string,
): Promise<{ map: BlockMap; source: CloneSource }> {
  const entry = await engine.getMeta(key);
  if (entry === null) {
    throw new NotFoundError(`Cannot find ${kind} "${key.slice(kind.length + 1)}": no such ${kind}`);
  }
  const { map } = await decodeRecord(engine, entry.value);
  return { map: map.clone(), source: { kind, key, value: entry.value } };
}

/**
 * A clone's source must still be there once the clone's record is: only then
 * does every collection see one of the two, and keep the blocks and objects
 * they share. A source deleted between the clone's read and its record (on
 * another node, whose collection may have marked neither) takes the clone with
 * it: the record goes and the clone fails (seed 1420 of the data-path
 * simulation with joins: a clone that took 2 s under faults finished after its
 * image's deletion and a collection's second mark, and read a deleted block).
 */
async function checkSourceKept(
  engine: Engine,
  name: string,
  version: number,
  source: CloneSource,
): Promise<void> {
  const now = await engine.getMeta(source.key);
  if (now !== null && bytesEqual(now.value, source.value)) return;
  await engine.deleteMeta(recordKey.volume(name), version);
  throw new NotFoundError(
    `Cannot create volume "${name}": its source ${source.kind} ` +
      `"${source.key.slice(source.kind.length + 1)}" was deleted while it was being cloned`,
  );
}

/** The origin as the log tells it. */
function describeOrigin(origin: VolumeOrigin): string {
  return origin.kind === "image"
    ? `clone of image ${origin.image}`
    : origin.kind === "snapshot"
    ? `clone of snapshot ${origin.volume}@${origin.snapshot}`
    : "empty";
}

/** 16 random bytes in hex. */
export function randomUid(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(16)));
}

/** `size` as a volume's size in bytes; TypeError or RangeError (400) naming what is wrong. */
export function checkSize(size: unknown): number {
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
    throw new TypeError(`Cannot size a volume: size must be a positive integer of bytes`);
  }
  if (size % sectorBytes !== 0) {
    throw new TypeError(
      `Cannot size a volume at ${size} bytes: sizes are multiples of ${sectorBytes} bytes`,
    );
  }
  if (size > volumeSizeBytesMax) {
    throw new RangeError(
      `Cannot size a volume at ${size} bytes: the limit is ${volumeSizeBytesMax}`,
    );
  }
  return size;
}
