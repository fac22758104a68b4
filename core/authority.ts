/**
 * A volume's authority: who may write it and where its reads go. The single
 * node is its own authority (every volume is here); a cluster's is the write
 * lease (`cluster/leases/`). NBD connections and the HTTP data routes both open
 * volumes through it, so they get the same coherence and the same fencing.
 */
import type { ByteRange } from "./engine.ts";
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
