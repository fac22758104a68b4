/**
 * What a data directory holds and what its file system has left, for the
 * capacity series in /metrics. Counting walks `blocks/` and `objects/` with
 * asynchronous calls, so a large store is counted without stalling I/O; the
 * caller decides how often (cli/_node_series.ts: at most once a minute).
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { isBlockName, isObjectName } from "./engine.ts";

/** What {@linkcode diskUsage} found. */
export interface DiskUsage {
  blocks: number;
  /** Bytes the blocks take on disk (allocated, as `du` counts). */
  blockBytes: number;
  objects: number;
  /** Bytes the objects take on disk (they are sparse: only what was written). */
  objectBytes: number;
}

/** The data directory's free and total bytes (statfs: instant). */
export function diskSpace(dir: string): { freeBytes: number; totalBytes: number } {
  const stats = fs.statfsSync(dir);
  return { freeBytes: stats.bavail * stats.bsize, totalBytes: stats.blocks * stats.bsize };
}

/** Counts the blocks and objects stored under `dir` (LocalEngine's layout). */
export async function diskUsage(dir: string): Promise<DiskUsage> {
  const blocks = await countFiles(join(dir, "blocks"), isBlockName);
  const objects = await countFiles(join(dir, "objects"), isObjectNameIn);
  return {
    blocks: blocks.files,
    blockBytes: blocks.bytes,
    objects: objects.files,
    objectBytes: objects.bytes,
  };
}

/** Object files are `UID/GEN.INDEX`; the name checked is `UID.GEN.INDEX`. */
function isObjectNameIn(name: string, parent: string): boolean {
  return isObjectName(`${parent}.${name}`);
}

/** Files one level down under `root` whose name `counts`, and their allocated bytes. */
async function countFiles(
  root: string,
  counts: (name: string, parent: string) => boolean,
): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for await (const sub of readDirOrNone(root)) {
    if (!sub.isDirectory) continue;
    for await (const entry of readDirOrNone(join(root, sub.name))) {
      if (!entry.isFile || !counts(entry.name, sub.name)) continue;
      try {
        const stat = await Deno.lstat(join(root, sub.name, entry.name));
        files++;
        bytes += (stat.blocks ?? 0) * 512;
      } catch { /* deleted meanwhile */ }
    }
  }
  return { files, bytes };
}

async function* readDirOrNone(path: string): AsyncIterable<Deno.DirEntry> {
  try {
    yield* Deno.readDir(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
