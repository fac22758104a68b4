/**
 * A volume used through a node on RADOS, for one client (an NBD connection or
 * an HTTP request): writes take the write lease here first and are fenced for
 * good once the lease moved away while the handle was open (EIO, and nothing
 * lands); reads go to this node's instance while it holds the lease, else to
 * the last flushed state.
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
} from "../core/mod.ts";
import type { RadosLeases } from "./rados_leases.ts";

/** A volume used through a node on RADOS; see the module doc. */
export class RadosVolumeHandle implements VolumeHandle {
  readonly canWrite = true;
  readonly canMultiConn = true;

  constructor(
    readonly leases: RadosLeases,
    readonly store: Store,
    readonly name: string,
    readonly sizeBytes: number,
    /** Losses of the lease at this node when the connection opened. */
    readonly atOpen: LeaseLosses,
  ) {}

  async read(range: ByteRange, into: Uint8Array): Promise<void> {
    if (!this.leases.holds(this.name)) return await this.leases.readFlushed(this.name, range, into);
    await (await this.store.openVolume(this.name)).readAt(range, into);
  }

  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    return this.#write(async (volume) => await volume.writeAt(offset, data, { fua }));
  }

  zero(range: ByteRange, options: { fua: boolean; keepAllocated: boolean }): Promise<void> {
    return this.#write(async (volume) => await volume.zeroAt(range, options));
  }

  zeroIsFast(range: ByteRange, keepAllocated: boolean): boolean {
    return this.leases.instance(this.name)?.zeroIsFast(range, { keepAllocated }) ?? false;
  }

  trim(range: ByteRange, fua: boolean): Promise<void> {
    return this.#write(async (volume) => await volume.trim(range, { fua }));
  }

  async flush(): Promise<void> {
    // A release under way may yet find the lease taken by force (RadosLeases.#release).
    await this.leases.settled(this.name);
    const lost = leaseRefusal(this.name, "flush", this.atOpen, this.leases.lossesOf(this.name));
    if (lost !== null) throw lost;
    // Not the holder: what this node acknowledged was made durable when it let go.
    if (!this.leases.holds(this.name)) return;
    const volume = await this.store.openVolume(this.name);
    await this.#refusedMeansLost(volume, () => volume.flush());
  }

  extents(range: ByteRange): Extent[] {
    // Allocation is the holder's to know; elsewhere report data, which is always true to read.
    return this.leases.instance(this.name)?.extents(range) ??
      [{ offset: range.offset, length: range.length, zero: false }];
  }

  async #write(fn: (volume: Volume) => Promise<void>): Promise<void> {
    const fenced = leaseRefusal(this.name, "write", this.atOpen, this.leases.lossesOf(this.name));
    if (fenced !== null) {
      this.leases.counters.fencedWrites++;
      throw fenced;
    }
    await this.leases.acquire(this.name);
    const volume = await this.store.openVolume(this.name);
    await this.#refusedMeansLost(volume, () => fn(volume));
  }

  /**
   * Runs `fn` on `volume`; a refusal by storage or the record means another
   * node took the lease this instance was opened under (not one this node took
   * again since: RadosLeases.noteLost).
   */
  async #refusedMeansLost(volume: Volume, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (error) {
      if (error instanceof ConflictError) {
        this.leases.noteLost(this.name, volume.lease?.epoch ?? 0);
        if (error instanceof LeaseLostError) throw error;
        throw new LeaseLostError(`Cannot write volume "${this.name}": ${error.message}`, {
          cause: error,
        });
      }
      throw error;
    }
  }
}
