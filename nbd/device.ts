/**
 * The small device interface the NBD protocol loop talks to, with capability
 * flags that become the export's transmission flags, and its adapters over the
 * store's volumes (read-write) and frozen views (images, snapshots: read-only).
 */
import type { ByteRange, Extent, FrozenView, Store, Volume } from "../core/mod.ts";
import { NotFoundError } from "../core/mod.ts";
import { TransmissionFlag as Flag } from "./protocol.ts";

/** What an export can do, and the calls that do it. */
export interface NbdDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly canWrite: boolean;
  /**
   * FLUSH on one connection makes every connection's acknowledged writes durable,
   * and all connections see the same bytes: true when every connection to this
   * export on this node shares one instance.
   */
  readonly canMultiConn: boolean;
  read(range: ByteRange, into: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void>;
  /** Makes `range` read as zeros; whole blocks become holes unless `keepAllocated`. */
  zero(range: ByteRange, options: { fua: boolean; keepAllocated: boolean }): Promise<void>;
  /** True when zero() of `range` would write no data (NBD FAST_ZERO may proceed). */
  zeroIsFast(range: ByteRange, keepAllocated: boolean): boolean;
  trim(range: ByteRange, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  extents(range: ByteRange): Extent[];
}

/** Transmission flags that say truthfully what `device` can do. */
export function transmissionFlags(device: NbdDevice): number {
  let flags = Flag.hasFlags | Flag.sendFlush | Flag.sendFua | Flag.sendDf | Flag.sendCache;
  if (device.canMultiConn) flags |= Flag.canMultiConn;
  if (device.canWrite) flags |= Flag.sendTrim | Flag.sendWriteZeroes | Flag.sendFastZero;
  else flags |= Flag.readOnly;
  return flags;
}

class VolumeDevice implements NbdDevice {
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

class FrozenDevice implements NbdDevice {
  readonly canWrite = false;
  readonly canMultiConn = true;
  constructor(readonly name: string, readonly view: FrozenView) {}
  get sizeBytes() {
    return this.view.sizeBytes;
  }
  async read(range: ByteRange, into: Uint8Array) {
    await this.view.readAt(range, into);
  }
  write(): Promise<void> {
    throw new TypeError(`Cannot write ${this.name}: it is read-only`);
  }
  zero(): Promise<void> {
    throw new TypeError(`Cannot write ${this.name}: it is read-only`);
  }
  zeroIsFast() {
    return false;
  }
  trim(): Promise<void> {
    throw new TypeError(`Cannot write ${this.name}: it is read-only`);
  }
  flush() {
    return Promise.resolve();
  }
  extents(range: ByteRange) {
    return this.view.extents(range);
  }
}

/** Opens a volume's device another way (a cluster's leased volumes); throws NotFoundError. */
export type VolumeOpener = (name: string) => Promise<NbdDevice>;

/**
 * Opens the export `name`: `image/NAME` and `snapshot/VOL@SNAP` read-only, any
 * other name a volume (through `openVolume` when given). Null when there is no
 * such export (or the name is not one a store could hold).
 */
export async function openExport(
  store: Store,
  name: string,
  openVolume?: VolumeOpener,
): Promise<NbdDevice | null> {
  try {
    if (name.startsWith("image/")) {
      return new FrozenDevice(name, await store.openImage(name.slice("image/".length)));
    }
    if (name.startsWith("snapshot/")) {
      const [volume, snapshot] = name.slice("snapshot/".length).split("@");
      if (snapshot === undefined) return null;
      return new FrozenDevice(name, await store.openSnapshot(volume, snapshot));
    }
    if (openVolume !== undefined) return await openVolume(name);
    return new VolumeDevice(await store.openVolume(name));
  } catch (error) {
    if (error instanceof NotFoundError || error instanceof TypeError) return null;
    throw error;
  }
}

/** Every export name, for NBD_OPT_LIST: volumes, then images, then snapshots. */
export async function listExports(store: Store, countMax: number): Promise<string[]> {
  const names = (await store.listVolumes()).map((volume) => volume.name);
  for (const image of await store.listImages()) names.push(`image/${image.name}`);
  for (const key of await store.engine.listMeta("snapshot/")) names.push(key);
  return names.slice(0, countMax);
}
