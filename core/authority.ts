/**
 * A volume's authority: who may write it and where its reads go. The single
 * node is its own authority (every volume is here); a cluster's is the write
 * lease (`cluster/leases/`). NBD connections and the HTTP data routes both open
 * volumes through it, so they get the same coherence and the same fencing.
 */
import type { ByteRange } from "./engine.ts";
import { LeaseLostError } from "./errors.ts";
import type { Extent } from "./map_io.ts";
import type { Store } from "./store.ts";
import type { Volume } from "./volume.ts";

/** A volume as one client (an NBD connection, an HTTP request) uses it. */
export interface VolumeHandle {
  readonly name: string;
  readonly sizeBytes: number;
  /** False for a read-only view (an image, a snapshot); volumes' handles write. */
  readonly canWrite: boolean;
  /**
   * FLUSH through one handle makes every handle's acknowledged writes durable,
   * and all handles see the same bytes: true when every handle of the volume on
   * this node shares one instance.
   */
  readonly canMultiConn: boolean;
  read(range: ByteRange, into: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void>;
  /** Makes `range` read as zeros; whole blocks become holes unless `keepAllocated`. */
  zero(range: ByteRange, options: { fua: boolean; keepAllocated: boolean }): Promise<void>;
  /** True when zero() of `range` would write no data. */
  zeroIsFast(range: ByteRange, keepAllocated: boolean): boolean;
  trim(range: ByteRange, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  extents(range: ByteRange): Extent[];
}

/**
 * Where a lease-backed handle stands against the losses of its volume's lease
 * at its node: `atOpen`, the counts when it opened; `now`, the counts now. A
 * loss since fences its writes for good; a loss by force since (the lease
 * taken without this node's release: what it acknowledged unflushed may be
 * gone with its instance) fails its flushes for good too, on every connection
 * open then (a flush covers every connection's writes).
 */
export interface LeaseLosses {
  /** Every loss of the lease at this node. */
  losses: number;
  /** Of those, the ones without this node's release. */
  forcedLosses: number;
}

/**
 * Why a `write` or a `flush` through a handle opened at `atOpen` must fail now:
 * a write after any loss of the lease since, a flush after a loss by force
 * since; null when it may go on.
 */
export function leaseRefusal(
  name: string,
  action: "write" | "flush",
  atOpen: LeaseLosses,
  now: LeaseLosses,
): LeaseLostError | null {
  const key = action === "write" ? "losses" : "forcedLosses";
  if (now[key] <= atOpen[key]) return null;
  return new LeaseLostError(
    action === "write"
      ? `Cannot write volume "${name}": this connection was open when the write lease moved ` +
        `to another node`
      : `Cannot flush volume "${name}": its write lease was taken from this node while this ` +
        `connection was open, and writes acknowledged since the last flush may be lost`,
  );
}

/** Opens volumes for clients; throws NotFoundError for a volume that does not exist. */
export interface VolumeAuthority {
  open(name: string): Promise<VolumeHandle>;
}

/** The single node's authority: every volume is its own, opened from the store. */
export class LocalAuthority implements VolumeAuthority {
  #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  async open(name: string): Promise<VolumeHandle> {
    return new LocalVolumeHandle(await this.#store.openVolume(name));
  }
}

/** A handle on the store's shared instance of a volume. */
class LocalVolumeHandle implements VolumeHandle {
  readonly canWrite = true;
  readonly canMultiConn = true;
  constructor(readonly volume: Volume) {}
  get name() {
    return this.volume.name;
  }
  get sizeBytes() {
    return this.volume.sizeBytes;
  }
  async read(range: ByteRange, into: Uint8Array) {
    await this.volume.readAt(range, into);
  }
  write(offset: number, data: Uint8Array, fua: boolean) {
    return this.volume.writeAt(offset, data, { fua });
  }
  zero(range: ByteRange, options: { fua: boolean; keepAllocated: boolean }) {
    return this.volume.zeroAt(range, options);
  }
  zeroIsFast(range: ByteRange, keepAllocated: boolean) {
    return this.volume.zeroIsFast(range, { keepAllocated });
  }
  trim(range: ByteRange, fua: boolean) {
    return this.volume.trim(range, { fua });
  }
  flush() {
    return this.volume.flush();
  }
  extents(range: ByteRange) {
    return this.volume.extents(range);
  }
}
