/**
 * What a Store is made of, built from its options: the garbage collector, the
 * page pins, the open volume instances and their I/O limiters, the images,
 * snapshots and volumes of the catalogue, and what creation, rollback and
 * flatten work with; all of them share the one catalogue lock made here.
 */
import type { HashPool } from "../wasm/hash_pool.ts";
import type { Clock } from "./clock.ts";
import { systemClock } from "./system_env.ts";
import type { Engine } from "./engine.ts";
import { Collector, type GcPolicy } from "./collector.ts";
import { blockSizeDefault } from "./limits.ts";
import { Mutex } from "./_mutex.ts";
import { Images } from "./_images.ts";
import { type NewVolumeContext, randomUid } from "./_new_volume.ts";
import { PagePins } from "./_page_pins.ts";
import { Snapshots } from "./_snapshots.ts";
import type { LifecycleContext } from "./_lifecycle.ts";
import { OpenWriters } from "./_open_writers.ts";
import { IoLimiters } from "./_io_limiters.ts";
import { type VolumeAccess, VolumeInstances } from "./_volume_instances.ts";
import { VolumeCatalogue } from "./_volume_catalogue.ts";
import { logger } from "../log/mod.ts";

const log = logger("store");

/** Options of the {@linkcode Store}. */
export interface StoreOptions {
  engine: Engine;
  pool: HashPool;
  blockSize?: number;
  /** Milliseconds after a deletion before garbage collection runs; default 1000. */
  gcDelayMs?: number;
  /** A cluster's say on volume access (its write leases); none on a single node. */
  access?: VolumeAccess;
  /** A cluster's garbage collection rules; none on a single node. */
  gcPolicy?: GcPolicy;
  /** The clock of the garbage collection timer; the system's unless told (a simulation). */
  clock?: Clock;
  /** Makes the uid of a new volume; 16 random bytes in hex unless told (a simulation). */
  newUid?: () => string;
  /**
   * Where qcow2 uploads are spooled before conversion (a node gives `DATA/tmp/`,
   * emptied at start); the system's temporary directory unless told.
   */
  spoolDir?: string;
}

/** The parts of one Store (see the module doc). */
export interface StoreParts {
  blockSize: number;
  access: VolumeAccess | null;
  gcPolicy: GcPolicy | null;
  collector: Collector;
  /** Map pages being stored whose record is not written yet (_page_pins.ts). */
  pins: PagePins;
  images: Images;
  volumes: VolumeInstances;
  snapshots: Snapshots;
  catalogue: VolumeCatalogue;
  /** What createVolume works with. */
  creation: NewVolumeContext;
  /** What rollback and flatten work with. */
  lifecycle: LifecycleContext;
  /** Connections that have a volume open for writing here (a rollback asks). */
  writers: OpenWriters;
  /** The volumes' I/O limiters on this node, kept to their records' limits. */
  limiters: IoLimiters;
}

/** Builds the parts of a Store from its options. */
export function storeParts(options: StoreOptions): StoreParts {
  const { engine, pool } = options;
  const blockSize = options.blockSize ?? blockSizeDefault;
  const access = options.access ?? null;
  const gcPolicy = options.gcPolicy ?? null;
  /** Serializes catalogue changes (each one brief: a collection never holds it long). */
  const lock = new Mutex();
  const writers = new OpenWriters();
  const limiters = new IoLimiters();
  // The collector is made below; the pins call it only once a page is stored.
  const pins: PagePins = new PagePins((ids) => collector.keep(ids));
  const volumes = new VolumeInstances(engine, access, pins, limiters);
  const collector: Collector = new Collector({
    engine,
    policy: gcPolicy,
    catalogue: lock,
    openVolumes: () => volumes.all(),
    // Asked only once a collection runs, by when `images` (made below) exists.
    pinnedHere: (hash) => images.pinned(hash) || pins.has(hash),
    clock: options.clock ?? systemClock,
    delayMs: options.gcDelayMs ?? 1000,
    onError: (error) => log.error("garbage collection failed: {error}", { error: String(error) }),
  });
  const shared = { engine, catalogue: lock, collector, pins };
  const images = new Images({ ...shared, pool, blockSize, spoolDir: options.spoolDir ?? null });
  return {
    blockSize,
    access,
    gcPolicy,
    collector,
    pins,
    images,
    volumes,
    snapshots: new Snapshots({ ...shared, volumes }),
    catalogue: new VolumeCatalogue({ ...shared, volumes, limiters, access }),
    creation: { ...shared, blockSize, newUid: options.newUid ?? randomUid },
    lifecycle: { ...shared, pool, volumes, writers },
    writers,
    limiters,
  };
}
