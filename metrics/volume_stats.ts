/**
 * Per-volume I/O figures, kept where the NBD hot path can bump them without
 * allocating: plain numbers in typed arrays, one {@linkcode VolumeStats} per
 * volume open over NBD on this node. prom-client reads them only at scrape
 * time (_volume_series.ts), so a request costs a few additions and a bucket
 * search, not a label hash and an object as `histogram.observe(labels, v)`
 * would.
 *
 * A volume's figures exist while at least one NBD connection of this node has
 * it open (the label `volume` is bounded by the number of open volumes); the
 * last connection to close removes its series, and a volume opened again
 * starts from zero (Prometheus's `rate()` reads that as a counter reset).
 */
/** The operations counted per volume, by index into the arrays of VolumeStats. */
export const VolumeOperation = { read: 0, write: 1, flush: 2, trim: 3, zero: 4 } as const;
/** An index of {@linkcode VolumeOperation}. */
export type VolumeOperation = (typeof VolumeOperation)[keyof typeof VolumeOperation];
/** The `operation` label of each index. */
export const volumeOperationNames: readonly string[] = ["read", "write", "flush", "trim", "zero"];
const operationsCount = volumeOperationNames.length;

/**
 * Upper bounds (seconds) of the latency buckets: from a cached 4 KiB read
 * (tens of µs) to a flush waiting on a slow replica (seconds).
 */
export const latencyBucketsSeconds: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  1,
  5,
];
const bucketsCount = latencyBucketsSeconds.length;

/** The I/O figures of one volume on this node; bumped by the NBD server. */
export class VolumeStats {
  readonly name: string;
  /** Requests completed, by operation (errors included). */
  readonly operations: Float64Array = new Float64Array(operationsCount);
  /** Bytes read, written, trimmed or zeroed, by operation (0 for flush). */
  readonly bytes: Float64Array = new Float64Array(operationsCount);
  /** Sum of the latencies, seconds, by operation. */
  readonly latencySumSeconds: Float64Array = new Float64Array(operationsCount);
  /**
   * Requests per latency bucket, not cumulative: `[operation * buckets + i]`
   * counts latencies in (bound i-1, bound i]; above the last bound only the
   * operation's total counts them (the `+Inf` bucket).
   */
  readonly latencyBuckets: Float64Array = new Float64Array(operationsCount * bucketsCount);
  /** Requests running now. */
  inFlight = 0;
  /** Entries the volume did not own yet that a write copied up (copy-on-write). */
  copyUps = 0;
  /** NBD connections that hold these figures open. */
  #holders = 0;

  constructor(name: string) {
    this.name = name;
  }

  /** Counts one finished request: `bytes` moved, `seconds` from start to reply. */
  record(operation: VolumeOperation, bytes: number, seconds: number): void {
    this.operations[operation] += 1;
    this.bytes[operation] += bytes;
    this.latencySumSeconds[operation] += seconds;
    for (let i = 0; i < bucketsCount; i++) {
      if (seconds <= latencyBucketsSeconds[i]) {
        this.latencyBuckets[operation * bucketsCount + i] += 1;
        return;
      }
    }
  }

  /** @internal The table's count of holders. */
  hold(by: number): number {
    this.#holders += by;
    if (this.#holders < 0) throw new Error(`Assertion failed: ${this.name} released too often`);
    return this.#holders;
  }
}

/** The volumes open over NBD on this node and their figures. */
export class VolumeStatsTable {
  #volumes = new Map<string, VolumeStats>();

  /** The figures of `name`, held until {@linkcode release}; shared by its connections. */
  open(name: string): VolumeStats {
    let stats = this.#volumes.get(name);
    if (stats === undefined) {
      stats = new VolumeStats(name);
      this.#volumes.set(name, stats);
    }
    stats.hold(1);
    return stats;
  }

  /** Lets go of figures {@linkcode open} gave; the last holder removes the volume's series. */
  release(stats: VolumeStats): void {
    if (stats.hold(-1) === 0 && this.#volumes.get(stats.name) === stats) {
      this.#volumes.delete(stats.name);
    }
  }

  /** The figures of `name` when it is open (core counts copy-ups through this). */
  find(name: string): VolumeStats | undefined {
    return this.#volumes.get(name);
  }

  /** Every open volume's figures. */
  values(): IterableIterator<VolumeStats> {
    return this.#volumes.values();
  }

  /** Open volumes now. */
  get size(): number {
    return this.#volumes.size;
  }
}

/** The process's table: what the NBD server opens and `/metrics` renders. */
export const openVolumes: VolumeStatsTable = new VolumeStatsTable();
