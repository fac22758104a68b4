/**
 * Rewrites records whose map was written whole (before maps had pages, magic
 * "ATMP") as a root and pages (map_store.ts). Such records load as they are;
 * this makes them small, once. A record changed meanwhile is left as it is:
 * its writer stores it as pages at its next change.
 *
 * Volumes are rewritten only where nothing holds them open (a single node at
 * start): a rewrite changes the record's version, which an open instance
 * would take for its lease lost. Images and snapshots never change, so any
 * node may rewrite them.
 */
import type { Engine } from "./engine.ts";
import { VersionMismatchError } from "./errors.ts";
import { decodeRecord, putRecord, recordHasLegacyMap } from "./records.ts";
import type { PagePins } from "./_page_pins.ts";

/** Rewrites the legacy records of `prefixes`; returns how many were rewritten. */
export async function migrateMaps(
  engine: Engine,
  pins: PagePins,
  prefixes: string[],
): Promise<number> {
  let rewritten = 0;
  for (const prefix of prefixes) {
    for (const key of await engine.listMeta(prefix)) {
      const entry = await engine.getMeta(key);
      if (entry === null || !recordHasLegacyMap(entry.value)) continue;
      const { header, map } = await decodeRecord<{ uid?: string }>(engine, entry.value);
      try {
        await putRecord(engine, key, { header, map, volume: header.uid }, entry.version, pins);
        rewritten++;
      } catch (error) {
        if (!(error instanceof VersionMismatchError)) throw error;
      }
    }
  }
  return rewritten;
}
