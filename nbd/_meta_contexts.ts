/**
 * The metadata contexts of an export: those it offers (LIST_META_CONTEXT),
 * those a client selects (SET_META_CONTEXT), and how BLOCK_STATUS answers each.
 *
 * - `base:allocation` (proto.md): zero entries of the map are holes reading as zeros.
 * - `qemu:dirty-bitmap:SNAP` (qemu's docs/interop/nbd.rst; what incremental
 *   backup tools such as virtnbdbackup read): on a volume's export, the blocks
 *   changed since its snapshot SNAP; on a snapshot's export
 *   `snapshot/VOL@LATER`, the blocks changed between VOL@SNAP and VOL@LATER.
 *   State bit 0 (value 1): dirty. The granularity is the map's block (4 MiB by
 *   default): a change anywhere in a block marks the whole block dirty.
 *
 * Queries besides exact names: `base:` lists base:allocation, `qemu:` and
 * `qemu:dirty-bitmap:` list the bitmap of every snapshot of the volume. In SET
 * those wildcards select nothing (proto.md and qemu say so), and a name that
 * names nothing (an unknown snapshot, a namespace we do not serve) is ignored,
 * never an error.
 */
import type { BlockMap, ByteRange, FrozenView, Store } from "../core/mod.ts";
import { changeExtents, NotFoundError } from "../core/mod.ts";
import type { NbdDevice } from "./device.ts";
import { listedMetaContextsMax } from "./limits.ts";
import {
  baseAllocation,
  baseAllocationId,
  dirtyBitmapPrefix,
  DirtyState,
  State,
} from "./protocol.ts";

/** A selected context: its id in replies, and the status of a range of the export. */
export interface MetaContext {
  id: number;
  name: string;
  /** Runs of `range` from its start, with their state flags, covering all of it. */
  status(range: ByteRange): Promise<{ length: number; flags: number }[]>;
}

/** The volume an export shows (and the snapshot, for `snapshot/VOL@SNAP`); null for an image. */
type Target = { volume: string; snapshot: string | null } | null;

function targetOf(exportName: string): Target {
  if (exportName.startsWith("image/")) return null;
  if (!exportName.startsWith("snapshot/")) return { volume: exportName, snapshot: null };
  const [volume, snapshot] = exportName.slice("snapshot/".length).split("@");
  return snapshot === undefined ? null : { volume, snapshot };
}

/** The context names the export offers that match `queries` (every one, with none). */
export async function listContexts(
  store: Store,
  exportName: string,
  queries: string[],
): Promise<string[]> {
  const all = queries.length === 0;
  const names: string[] = [];
  if (all || queries.some((query) => query === "base:" || query === baseAllocation)) {
    names.push(baseAllocation);
  }
  const target = targetOf(exportName);
  if (target === null) return names;
  const wildcard = all ||
    queries.some((query) => query === "qemu:" || query === dirtyBitmapPrefix);
  const wanted = new Set(
    queries.filter((query) => query.startsWith(dirtyBitmapPrefix))
      .map((query) => query.slice(dirtyBitmapPrefix.length)),
  );
  for (const key of await store.engine.listMeta(`snapshot/${target.volume}@`)) {
    const snapshot = key.slice(key.indexOf("@") + 1);
    if (names.length === listedMetaContextsMax) break;
    if (wildcard || wanted.has(snapshot)) names.push(dirtyBitmapPrefix + snapshot);
  }
  return names;
}

/**
 * The contexts `queries` select on the export (each once, ids from 1 on),
 * answered through `device` and `store`. Wildcards and names that name
 * nothing select nothing.
 */
export async function selectContexts(
  store: Store,
  exportName: string,
  device: NbdDevice,
  queries: string[],
): Promise<MetaContext[]> {
  const contexts: MetaContext[] = [];
  const target = targetOf(exportName);
  for (const name of new Set(queries)) {
    if (name === baseAllocation) {
      contexts.push({ id: baseAllocationId, name, status: allocationOf(device) });
      continue;
    }
    if (target === null || !name.startsWith(dirtyBitmapPrefix)) continue;
    const since = await snapshotMap(store, target.volume, name.slice(dirtyBitmapPrefix.length));
    if (since === null) continue;
    const id = baseAllocationId + 1 + contexts.filter((c) => c.id !== baseAllocationId).length;
    contexts.push({ id, name, status: await dirtyOf(store, target, since) });
  }
  return contexts;
}

function allocationOf(device: NbdDevice): MetaContext["status"] {
  return (range) =>
    Promise.resolve(
      device.extents(range).map((extent) => ({
        length: extent.length,
        flags: extent.zero ? State.hole | State.zero : 0,
      })),
    );
}

/** The dirty bitmap since `since` of a volume's export, or of a later snapshot's. */
async function dirtyOf(
  store: Store,
  target: { volume: string; snapshot: string | null },
  since: BlockMap,
): Promise<MetaContext["status"]> {
  const flagsOf = (runs: { length: number; changed: boolean }[]) =>
    runs.map((run) => ({ length: run.length, flags: run.changed ? DirtyState.dirty : 0 }));
  if (target.snapshot === null) {
    const volume = target.volume;
    return async (range) => flagsOf(await store.changedExtents(volume, since, range));
  }
  const later = await store.openSnapshot(target.volume, target.snapshot);
  return (range) => Promise.resolve(flagsOf(changeExtents(since, later.map, range)));
}

/** The map of snapshot `volume@name`, or null when there is none (or the name is not one). */
async function snapshotMap(store: Store, volume: string, name: string): Promise<BlockMap | null> {
  let view: FrozenView;
  try {
    view = await store.openSnapshot(volume, name);
  } catch (error) {
    if (error instanceof NotFoundError || error instanceof TypeError) return null;
    throw error;
  }
  return view.map;
}

/** Distinct queries of a SET that could each select a context (wildcards select none). */
export function selectableCount(queries: string[]): number {
  return new Set(queries.filter((query) =>
    query === baseAllocation ||
    (query.startsWith(dirtyBitmapPrefix) && query.length > dirtyBitmapPrefix.length)
  )).size;
}
