/** The core of Atoll: maps, volumes, images, snapshots, copy-on-write, GC. */
export * from "./authority.ts";
export {
  isUnavailable,
  PatientAuthority,
  type PatientAuthorityOptions,
  unavailableWaitMsDefault,
} from "./patient_authority.ts";
export type { Clock } from "./clock.ts";
export {
  randomBytes,
  randomId,
  systemClock,
  systemRandom,
  systemTimers,
  wallClockMs,
} from "./system_env.ts";
export * from "./engine.ts";
export * from "./errors.ts";
export * from "./limits.ts";
export * from "./names.ts";
export { BlockMap, type MapEntry } from "./block_map.ts";
export { FrozenView } from "./frozen_view.ts";
export { Qcow2View } from "./qcow2_view.ts";
export { type ChangeExtent, changeExtents, type ChangeList } from "./changes.ts";
/** Stored maps: backups keep them, pages and all, in another store (backup/). */
export { encodeMapRoot, loadMap, mapRootBytes, type PageSource } from "./map_store.ts";
export type { Extent } from "./map_io.ts";
export { LocalEngine, type LocalEngineOptions } from "./local_engine.ts";
export { diskSpace, type DiskUsage } from "./_disk_usage.ts";
/** The real disk's sync of a directory's entries and its buffered writes, for the other real disks (journals, logs). */
export { syncDir, syncDirSync, writeAll } from "./_file_io.ts";
export { BufferPool } from "./buffer_pool.ts";
export { parseUploadFormat, type UploadFormat } from "./_image_formats.ts";
export * from "./store.ts";
export type { VolumeLease } from "./records.ts";
export type { GcResult } from "./gc.ts";
export type { IngestProgress } from "./ingest.ts";
export { type ByteSource, streamSource } from "./byte_source.ts";
export { Volume, type WriteOptions, type ZeroOptions } from "./volume.ts";
export { type IoKind, IoLimiter } from "./io_limiter.ts";
export { checkQos, qosRateKeys, type VolumeQos } from "./qos.ts";
export { OpenWriters } from "./_open_writers.ts";
