/**
 * A node's own series in /metrics that are read at scrape time: connections
 * (open, served, caps), the open-files limit, uploads running and how much
 * they deduplicated, and capacity: the data disk, what this node stores, and
 * what the catalogue's images and volumes address (logical bytes, against
 * the physical bytes stored: what thin provisioning and dedup save).
 *
 * Counting what is stored walks the data directory, and the catalogue's
 * figures read every record: both run in the background at most once every
 * {@linkcode capacityScanIntervalMs}; a scrape shows the last result (the
 * first scrape waits for the first one). A scan that fails (a cluster member
 * cut off from its metadata voters cannot list the catalogue) keeps the last
 * figures, counts the failure and says so in the log: the scrape still
 * answers, and nothing is left to reject where no one waits (which would end
 * the process).
 */
import { diskSpace, type DiskUsage, type LocalEngine, type Store } from "../core/mod.ts";
import { type ScrapedSeries, scrapedSeries } from "../metrics/mod.ts";
import { logger } from "../log/mod.ts";

const log = logger("node");

/** Shortest time between two walks of the data directory and the catalogue. */
export const capacityScanIntervalMs = 60_000;

/** What the node's series read. */
export interface NodeFigures {
  store: Store;
  /** The node's own files (null on the RADOS engine: nothing is stored on this node). */
  local: LocalEngine | null;
  /** The data directory, whose file system's space is reported. */
  dataDir: string;
  filesLimit: number;
  http: { connections: () => number; served: () => number; connectionsMax: number };
  nbd: { connections: () => number; served: () => number; connectionsMax: number };
}

/** The catalogue's figures: what images and volumes address. */
interface CatalogueFigures {
  images: number;
  volumes: number;
  imageBytes: number;
  volumeProvisionedBytes: number;
  volumeAllocatedBytes: number;
}

/** Registers the node's series; the result removes them. */
export function registerNodeSeries(figures: NodeFigures): () => void {
  const { store, local } = figures;
  const scan = new CapacityScan(store, local);
  const gauge = (name: string, help: string, read: ScrapedSeries["read"]): ScrapedSeries => ({
    name,
    help,
    type: "gauge",
    read,
  });
  const stored = async () => {
    await scan.refresh();
    return scan.usage;
  };
  const listed = async () => {
    await scan.refresh();
    return scan.catalogue;
  };
  const unregister = scrapedSeries([
    gauge("atoll_open_files_limit", "Descriptors this process may hold", () => figures.filesLimit),
    gauge("atoll_http_connections_open", "HTTP API connections open", figures.http.connections),
    gauge(
      "atoll_http_connections_max",
      "HTTP API connections served at once at most",
      () => figures.http.connectionsMax,
    ),
    {
      name: "atoll_http_connections_served_total",
      help: "HTTP API connections admitted since start",
      type: "counter",
      read: figures.http.served,
    },
    gauge("atoll_nbd_connections_open", "NBD connections open", figures.nbd.connections),
    gauge(
      "atoll_nbd_connections_max",
      "NBD connections served at once at most",
      () => figures.nbd.connectionsMax,
    ),
    {
      name: "atoll_nbd_connections_served_total",
      help: "NBD connections admitted since start",
      type: "counter",
      read: figures.nbd.served,
    },
    gauge("atoll_uploads_in_progress", "Image uploads running now", () => store.uploads().length),
    gauge(
      "atoll_data_disk_free_bytes",
      "Bytes free for new data on the data directory's file system",
      () => diskSpace(figures.dataDir).freeBytes,
    ),
    gauge(
      "atoll_data_disk_size_bytes",
      "Size of the data directory's file system",
      () => diskSpace(figures.dataDir).totalBytes,
    ),
    gauge(
      "atoll_stored_blocks",
      "Content blocks stored on this node",
      async () => (await stored()).blocks,
    ),
    gauge(
      "atoll_stored_objects",
      "Volume objects stored on this node",
      async () => (await stored()).objects,
    ),
    {
      ...gauge(
        "atoll_stored_bytes",
        "Bytes this node stores on disk (physical), by kind",
        async () => {
          const usage = await stored();
          return [[{ kind: "block" }, usage.blockBytes], [{ kind: "object" }, usage.objectBytes]];
        },
      ),
      labelNames: ["kind"],
    },
    gauge("atoll_images", "Images in the catalogue", async () => (await listed()).images),
    gauge("atoll_volumes", "Volumes in the catalogue", async () => (await listed()).volumes),
    gauge(
      "atoll_images_logical_bytes",
      "Bytes the images hold that are not zero (logical)",
      async () => (await listed()).imageBytes,
    ),
    gauge(
      "atoll_volumes_provisioned_bytes",
      "Sum of the volumes' sizes (thin: promised, not stored)",
      async () => (await listed()).volumeProvisionedBytes,
    ),
    gauge(
      "atoll_volumes_allocated_bytes",
      "Bytes of the volumes' entries that are not zero (logical; shared blocks count once per volume)",
      async () => (await listed()).volumeAllocatedBytes,
    ),
    gauge(
      "atoll_capacity_scan_age_seconds",
      "Age of the figures atoll_stored_*, atoll_images* and atoll_volumes* (counted at most " +
        "once a minute): since the last scan that counted everything, or since the start",
      async () => {
        await scan.refresh();
        return scan.ageSeconds();
      },
    ),
    {
      name: "atoll_capacity_scan_failures_total",
      help: "Scans of the data directory or the catalogue that failed (their figures stay as " +
        "they were; the log says why)",
      type: "counter",
      read: async () => {
        await scan.refresh();
        return scan.failures;
      },
    },
  ]);
  return unregister;
}

/** The last counts of the data directory and of the catalogue, refreshed in the background. */
class CapacityScan {
  usage: DiskUsage = { blocks: 0, blockBytes: 0, objects: 0, objectBytes: 0 };
  catalogue: CatalogueFigures = {
    images: 0,
    volumes: 0,
    imageBytes: 0,
    volumeProvisionedBytes: 0,
    volumeAllocatedBytes: 0,
  };
  /** Scans that failed in part or whole. */
  failures = 0;
  #store: Store;
  #local: LocalEngine | null;
  #startedAtMs = performance.now();
  /** When the last scan ended, and when the last one that counted everything did. */
  #doneAtMs: number | null = null;
  #countedAtMs: number | null = null;
  #running: Promise<void> | null = null;

  constructor(store: Store, local: LocalEngine | null) {
    this.#store = store;
    this.#local = local;
  }

  /** Seconds since the last scan that counted everything (since the start before one did). */
  ageSeconds(): number {
    return (performance.now() - (this.#countedAtMs ?? this.#startedAtMs)) / 1000;
  }

  /** Starts a scan when the last is old; waits only for the first one. Never rejects. */
  refresh(): Promise<void> {
    const due = this.#doneAtMs === null ||
      performance.now() - this.#doneAtMs >= capacityScanIntervalMs;
    if (due && this.#running === null) {
      this.#running = this.#scan().finally(() => {
        this.#doneAtMs = performance.now();
        this.#running = null;
      });
    }
    return this.#doneAtMs === null && this.#running !== null ? this.#running : Promise.resolve();
  }

  async #scan(): Promise<void> {
    const [usage, catalogue] = await Promise.allSettled([
      this.#local === null ? Promise.resolve(this.usage) : this.#local.usage(),
      this.#countCatalogue(),
    ]);
    if (usage.status === "fulfilled") this.usage = usage.value;
    if (catalogue.status === "fulfilled") this.catalogue = catalogue.value;
    const failed = [usage, catalogue].filter((result) => result.status === "rejected");
    if (failed.length === 0) {
      this.#countedAtMs = performance.now();
      return;
    }
    this.failures++;
    for (const result of failed) {
      log.warn("capacity figures not refreshed: {error}", {
        error: ((result as PromiseRejectedResult).reason as Error)?.message,
      });
    }
  }

  async #countCatalogue(): Promise<CatalogueFigures> {
    const [images, volumes] = await Promise.all([
      this.#store.listImages(),
      this.#store.listVolumes(),
    ]);
    return {
      images: images.length,
      volumes: volumes.length,
      imageBytes: images.reduce(
        (sum, image) =>
          sum + Math.min(image.size, (image.blocks - image.zeroBlocks) * image.blockSize),
        0,
      ),
      volumeProvisionedBytes: volumes.reduce((sum, volume) => sum + volume.size, 0),
      volumeAllocatedBytes: volumes.reduce(
        (sum, volume) => sum + Math.min(volume.size, volume.allocatedBlocks * volume.blockSize),
        0,
      ),
    };
  }
}
