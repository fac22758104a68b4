/**
 * The small device interface the NBD protocol loop talks to, with capability
 * flags that become the export's transmission flags: volumes' handles from their
 * authority (read-write), and an adapter over frozen views (images, snapshots).
 */
import type { ByteRange, FrozenView, Store, VolumeAuthority, VolumeHandle } from "../core/mod.ts";
import { NotFoundError } from "../core/mod.ts";
import { TransmissionFlag as Flag } from "./protocol.ts";

/**
 * What an export can do, and the calls that do it: a volume's handle (from the
 * volumes' authority), or an image's or snapshot's frozen view (read-only).
 */
export type NbdDevice = VolumeHandle;

/** Transmission flags that say truthfully what `device` can do. */
export function transmissionFlags(device: NbdDevice): number {
  let flags = Flag.hasFlags | Flag.sendFlush | Flag.sendFua | Flag.sendDf | Flag.sendCache;
  if (device.canMultiConn) flags |= Flag.canMultiConn;
  if (device.canWrite) flags |= Flag.sendTrim | Flag.sendWriteZeroes | Flag.sendFastZero;
  else flags |= Flag.readOnly;
  return flags;
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

/**
 * Opens the export `name`: `image/NAME` and `snapshot/VOL@SNAP` read-only, any
 * other name a volume (through the volumes' authority). Null when there is no
 * such export (or the name is not one a store could hold).
 */
export async function openExport(
  store: Store,
  name: string,
  authority: VolumeAuthority,
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
    return await authority.open(name);
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
