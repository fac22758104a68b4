/**
 * The write lease in its volume's record on RADOS (`lease: {holder, epoch,
 * client}`): moving it by compare-and-set of the record, after asking its
 * holder to let go or fencing it (_lease_handover.ts); clearing the holder
 * when it lets go; reading who holds it.
 */
import { ConflictError, NotFoundError, VersionMismatchError } from "../core/mod.ts";
import {
  decodeRecordHeader,
  recordKey,
  type VolumeHeader,
  withRecordHeader,
} from "../core/records.ts";
import type { RadosEngine } from "./rados_engine.ts";
import { askRelease, fenceHolder, type RadosLease } from "./_lease_handover.ts";

/** Tries to move a lease when other nodes race for it. */
const moveAttemptsMax = 16;

/** How a move goes: who moves, how long a holder has, and what a fence counts. */
export interface MoveOptions {
  /** This node's stable id (what records name as holder). */
  selfId: string;
  /** Time a holder has to let go when asked, before it is fenced by force. */
  releaseTimeoutMs: number;
  /** Pause after blocklisting a holder, for every OSD to learn it. */
  fenceSettleMs: number;
  /** Called each time a holder that did not let go was fenced (blocklisted). */
  onFenced: () => void;
}

/** A move written: the lease before and after, and the record as written. */
export interface MovedLease {
  from: RadosLease;
  to: RadosLease;
  uid: string;
  bytes: Uint8Array;
  version: number;
}

/**
 * Moves the lease of `name` to `to` (null: nobody holds it after) in its
 * record. A holder other than this node is asked to let go first when `to`
 * is a node, and fenced when it did not (or when breaking the lease); then
 * `{holder: to, epoch + 1, client}` is written by compare-and-set, and the
 * record read again when another node moved it meanwhile.
 */
export async function moveLease(
  engine: RadosEngine,
  name: string,
  to: string | null,
  options: MoveOptions,
): Promise<MovedLease> {
  let asked: string | null = null;
  for (let attempt = 0; attempt < moveAttemptsMax; attempt++) {
    const key = recordKey.volume(name);
    const entry = await engine.getMeta(key);
    if (entry === null) {
      throw new NotFoundError(`Cannot move the lease of "${name}": no such volume`);
    }
    const header = decodeRecordHeader<VolumeHeader>(entry.value);
    const lease: RadosLease = header.lease ?? { holder: null, epoch: 0 };
    if (lease.holder !== null) {
      const state = `${lease.holder}@${lease.epoch}`;
      if (to !== null && lease.holder !== options.selfId && asked !== state) {
        asked = state;
        await askRelease(engine, name, options.releaseTimeoutMs);
        continue; // read the record again: released, or still held
      }
      if (await fenceHolder(engine, name, lease, options.fenceSettleMs)) options.onFenced();
    }
    const next: RadosLease = to === null
      ? { holder: null, epoch: lease.epoch + 1 }
      : { holder: to, epoch: lease.epoch + 1, client: engine.connection.address };
    const bytes = withRecordHeader(entry.value, { ...header, lease: next });
    try {
      const version = await engine.putMeta(key, bytes, entry.version);
      return { from: lease, to: next, uid: header.uid, bytes, version };
    } catch (error) {
      if (error instanceof VersionMismatchError) continue; // moved meanwhile
      throw error;
    }
  }
  throw new ConflictError(`Cannot move the write lease of "${name}": other nodes kept moving it`);
}

/**
 * Writes `{holder: null}` into the record of `name` while its lease is still at
 * `epoch`; false when the lease had moved on (another node took it meanwhile),
 * true when it was cleared or the volume is gone.
 */
export async function clearHolder(
  engine: RadosEngine,
  name: string,
  epoch: number,
): Promise<boolean> {
  const key = recordKey.volume(name);
  const entry = await engine.getMeta(key);
  if (entry === null) return true;
  const header = decodeRecordHeader<VolumeHeader>(entry.value);
  if (header.lease?.epoch !== epoch) return false;
  const bytes = withRecordHeader(entry.value, { ...header, lease: { holder: null, epoch } });
  await engine.putMeta(key, bytes, entry.version);
  return true;
}

/** The node the record of `name` names as the lease's holder; null for none or no volume. */
export async function recordedHolder(engine: RadosEngine, name: string): Promise<string | null> {
  const entry = await engine.getMeta(recordKey.volume(name));
  if (entry === null) return null; // the store says NotFound
  return decodeRecordHeader<VolumeHeader>(entry.value).lease?.holder ?? null;
}
