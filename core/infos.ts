/** What the API shows of images, volumes, snapshots and uploads, built from records. */
import type { BlockMap } from "./block_map.ts";
import type { IngestProgress } from "./ingest.ts";
import type {
  ImageHeader,
  SnapshotHeader,
  VolumeHeader,
  VolumeLease,
  VolumeOrigin,
} from "./records.ts";
import type { VolumeQos } from "./qos.ts";

/** What the API shows of an image. */
export interface ImageInfo {
  name: string;
  size: number;
  blockSize: number;
  /** Entries of the map, zero ones included. */
  blocks: number;
  zeroBlocks: number;
  createdAt: string;
}

/** Result of an upload: the image, and what it added to the store. */
export interface UploadResult extends ImageInfo {
  newBlocks: number;
  newBytes: number;
  /** False when an image of that name and the same content was already there. */
  created: boolean;
}

/** What the API shows of a volume. */
export interface VolumeInfo {
  name: string;
  size: number;
  blockSize: number;
  createdAt: string;
  origin: VolumeOrigin;
  /** Entries that are not zero (data the volume reads from blocks or objects). */
  allocatedBlocks: number;
  /** The write lease (in a cluster, once a node took it). */
  lease?: VolumeLease;
  /** I/O limits (core/qos.ts); an empty object when none. */
  qos: VolumeQos;
}

/** What the API shows of a snapshot. */
export interface SnapshotInfo {
  volume: string;
  name: string;
  size: number;
  blockSize: number;
  createdAt: string;
}

/** An upload under way, as `GET /v1/uploads` shows it. */
export interface UploadStatus extends IngestProgress {
  name: string;
  startedAt: string;
  /** What the body was taken for, once its first bytes said (a qcow2 is converted to raw). */
  format: "raw" | "qcow2" | null;
  /** Bytes of a qcow2 body written to its spool file so far (0 for raw). */
  spooledBytes: number;
}

/** An image as the API shows it. */
export function imageInfo(header: ImageHeader, map: BlockMap): ImageInfo {
  return {
    name: header.name,
    size: map.sizeBytes,
    blockSize: map.blockSize,
    blocks: map.count,
    zeroBlocks: map.count - map.allocated,
    createdAt: header.createdAt,
  };
}

/** A volume as the API shows it. */
export function volumeInfo(header: VolumeHeader, map: BlockMap): VolumeInfo {
  return {
    name: header.name,
    size: map.sizeBytes,
    blockSize: map.blockSize,
    createdAt: header.createdAt,
    origin: header.origin,
    allocatedBlocks: map.allocated,
    ...(header.lease === undefined ? {} : { lease: header.lease }),
    qos: { ...header.qos },
  };
}

/** A snapshot as the API shows it. */
export function snapshotInfo(header: SnapshotHeader, map: BlockMap): SnapshotInfo {
  return {
    volume: header.volume,
    name: header.name,
    size: map.sizeBytes,
    blockSize: map.blockSize,
    createdAt: header.createdAt,
  };
}
