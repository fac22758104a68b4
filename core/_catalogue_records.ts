/** Reading and deleting one record of the catalogue (an image, a volume, a snapshot) by key. */
import type { BlockMap } from "./block_map.ts";
import type { Engine } from "./engine.ts";
import { NotFoundError } from "./errors.ts";
import { decodeRecord } from "./records.ts";

/** The record at `key`, of `kind` ("image", "snapshot"...); NotFoundError when there is none. */
export async function readRecord<T>(
  engine: Engine,
  kind: string,
  key: string,
): Promise<{ header: T; map: BlockMap }> {
  const entry = await engine.getMeta(key);
  if (entry === null) {
    throw new NotFoundError(
      `Cannot find ${kind} "${key.slice(kind.length + 1)}": no such ${kind}`,
    );
  }
  return await decodeRecord<T>(engine, entry.value);
}

/** Deletes the record at `key`, of `kind`; NotFoundError when there is none. */
export async function deleteRecord(engine: Engine, kind: string, key: string): Promise<void> {
  const entry = await engine.getMeta(key);
  if (entry === null) {
    throw new NotFoundError(
      `Cannot delete ${kind} "${key.slice(kind.length + 1)}": no such ${kind}`,
    );
  }
  await engine.deleteMeta(key, entry.version);
}
