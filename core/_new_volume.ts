/**
 * Creating a volume: what it starts from (the map and origin its source gives:
 * an image, a snapshot or a size), its uid, and its first record.
 */
import { toHex } from "../wasm/to_hex.ts";
import { BlockMap } from "./block_map.ts";
import type { Collector } from "./collector.ts";
import type { Engine } from "./engine.ts";
import { ConflictError, VersionMismatchError } from "./errors.ts";
import { type VolumeInfo, volumeInfo } from "./infos.ts";
import { volumeSizeBytesMax } from "./limits.ts";
import type { Mutex } from "./_mutex.ts";
import { parseSnapshotRef, validateName } from "./names.ts";
import { encodeRecord, recordKey, type VolumeHeader, type VolumeOrigin } from "./records.ts";
import { readRecord } from "./_catalogue_records.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

/** The source of a new volume, as Store.createVolume is asked for it (exactly one given). */
export interface VolumeSource {
  image?: string;
  snapshot?: string;
  size?: number;
}

/** What {@linkcode createVolume} works with: the store's parts. */
export interface NewVolumeContext {
  engine: Engine;
  /** The store's catalogue lock (held to write the record). */
  catalogue: Mutex;
  collector: Collector;
  blockSize: number;
  newUid: () => string;
}

/** Creates the volume `request.name` from its source (see Store.createVolume). */
export async function createVolume(
  context: NewVolumeContext,
  request: { name: string } & VolumeSource,
): Promise<VolumeInfo> {
  const { engine, catalogue, collector, blockSize, newUid } = context;
  const name = validateName(request.name, "volume");
  const sources = [request.image, request.snapshot, request.size].filter((s) => s !== undefined);
  if (sources.length !== 1) {
    throw new TypeError(
      `Cannot create volume "${name}": give exactly one of image, snapshot, size`,
    );
  }
  return await catalogue.run(async () => {
    const { map, origin } = await volumeStart(engine, request, blockSize);
    const header: VolumeHeader = {
      name,
      uid: newUid(),
      generation: 1,
      createdAt: new Date().toISOString(),
      origin,
    };
    collector.track(map, header.uid);
    try {
      await engine.putMeta(recordKey.volume(name), encodeRecord(header, map), 0);
    } catch (error) {
      if (error instanceof VersionMismatchError) {
        throw new ConflictError(`Cannot create volume "${name}": it exists`);
      }
      throw error;
    }
    log.info("created volume {volume} ({origin})", {
      volume: name,
      uid: header.uid,
      origin: describeOrigin(origin),
      sizeBytes: map.sizeBytes,
    });
    return volumeInfo(header, map);
  });
}

/** The map a new volume starts with (a copy of its source's) and where it came from. */
async function volumeStart(
  engine: Engine,
  source: VolumeSource,
  blockSize: number,
): Promise<{ map: BlockMap; origin: VolumeOrigin }> {
  if (source.image !== undefined) {
    const image = validateName(source.image, "image");
    const map = (await readRecord(engine, "image", recordKey.image(image))).map.clone();
    return { map, origin: { kind: "image", image } };
  }
  if (source.snapshot !== undefined) {
    const { volume, snapshot } = parseSnapshotRef(source.snapshot);
    const key = recordKey.snapshot(volume, snapshot);
    const map = (await readRecord(engine, "snapshot", key)).map.clone();
    return { map, origin: { kind: "snapshot", volume, snapshot } };
  }
  const map = new BlockMap({ sizeBytes: checkSize(source.size), blockSize });
  return { map, origin: { kind: "empty" } };
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
