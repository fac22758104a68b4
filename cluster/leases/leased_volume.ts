/**
 * A volume used through a cluster node, for one client (an NBD connection or
 * an HTTP request): writes take the write lease here first and are fenced for
 * good once the lease moved away while the handle was open; reads stay
 * coherent with the holder wherever it is.
 */
import {
  type ByteRange,
  ConflictError,
  type Extent,
  type LeaseLosses,
  LeaseLostError,
  leaseRefusal,
  type Store,
  type Volume,
  type VolumeHandle,
} from "../../core/mod.ts";
import type { LeaseManager } from "./leases.ts";

/** A volume used through a cluster node: writes take the lease, reads stay coherent. */
export class LeasedVolumeHandle implements VolumeHandle {
  readonly canWrite = true;
  readonly canMultiConn = true;

  constructor(
    readonly leases: LeaseManager,
    readonly store: Store,
    readonly name: string,
    readonly sizeBytes: number,
    /** Losses of the lease at this node when the connection opened. */
    readonly atOpen: LeaseLosses,
  ) {}

  read(range: ByteRange, into: Uint8Array): Promise<void> {
    return this.leases.read(this.name, range, into);
  }

  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    return this.#writing(async (volume) => await volume.writeAt(offset, data, { fua }));
  }

  zero(range: ByteRange, options: { fua: boolean; keepAllocated: boolean }): Promise<void> {
    return this.#writing(async (volume) => await volume.zeroAt(range, options));
  }

  zeroIsFast(): boolean {
    // Only the holder's map could tell; say no (a FAST_ZERO then fails fast).
    return false;
  }

  trim(range: ByteRange, fua: boolean): Promise<void> {
    return this.#writing(async (volume) => await volume.trim(range, { fua }));
  }

  async flush(): Promise<void> {
    const lost = leaseRefusal(this.name, "flush", this.atOpen, this.leases.lossesOf(this.name));
    if (lost !== null) throw lost;
    // Not the holder: whatever this node acknowledged was made durable when it
    // released (or its loss went with the record); the holder flushes what it
    // acknowledged, and reports a loss found there.
    if (!this.leases.holds(this.name)) return await this.leases.flush(this.name);
    const volume = await this.store.openVolume(this.name);
    await this.#refusedMeansLost(volume, () => volume.flush());
  }

  extents(range: ByteRange): Extent[] {
    // Allocation is the holder's to know: report data, which is always true to read.
    return [{ offset: range.offset, length: range.length, zero: false }];
  }

  async #writing(fn: (volume: Volume) => Promise<void>): Promise<void> {
    const ended = this.leases.writeBegins(this.name);
    try {
      const volume = await this.#writable();
      await this.#refusedMeansLost(volume, () => fn(volume));
    } finally {
      ended();
    }
  }

  /**
   * Runs `fn` on `volume`; a refusal by storage or the record means another
   * node took the lease this instance was opened under (and only that one: the
   * node may hold a newer lease since, LeaseManager.noteLost).
   */
  async #refusedMeansLost(volume: Volume, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (error) {
      const epoch = volume.lease?.epoch ?? 0;
      if (error instanceof ConflictError && !(error instanceof LeaseLostError)) {
        this.leases.noteLost(this.name, epoch);
        throw new LeaseLostError(`Cannot write volume "${this.name}": ${error.message}`, {
          cause: error,
        });
      }
      if (error instanceof LeaseLostError) this.leases.noteLost(this.name, epoch);
      throw error;
    }
  }

  async #writable(): Promise<Volume> {
    const fenced = leaseRefusal(this.name, "write", this.atOpen, this.leases.lossesOf(this.name));
    if (fenced !== null) {
      this.leases.counters.fencedWrites++;
      throw fenced;
    }
    await this.leases.acquire(this.name);
    await this.leases.confirm(this.name);
    return await this.store.openVolume(this.name);
  }
}
