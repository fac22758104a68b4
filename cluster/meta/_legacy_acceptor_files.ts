/**
 * Acceptor states as nodes kept them before the shared log (acceptor_log.ts):
 * a file per key, `kind.NAME`, of records framed as u32 length, u32 CRC-32,
 * then the encoded state; the last whole record is the key's state.
 *
 * @module
 */
import * as fs from "node:fs";
import { join } from "node:path";
import zlib from "node:zlib";
import { isMetaKey, syncDirSync } from "../../core/mod.ts";

/** Where a data directory kept acceptor states before the log, and what stands there since. */
export const legacyDirName = "paxos";
const markerText = "Atoll keeps this node's acceptor states in acceptors/ (one log) now. This " +
  "file stands where they were so that an earlier version, which cannot read that log, stops " +
  "at start instead of running its acceptor with no state.\n";

const frameBytes = 8;

/**
 * The old files in `dir` (every one, `.tmp` leftovers included) and the last
 * whole state of each key that `known` does not hold already.
 */
export function readLegacyStates(
  dir: string,
  known: (key: string) => boolean,
): { files: string[]; states: Map<string, Uint8Array> } {
  const files: string[] = [];
  const states = new Map<string, Uint8Array>();
  for (const file of fs.readdirSync(dir)) {
    const key = keyOf(file.endsWith(".tmp") ? file.slice(0, -4) : file);
    if (key === null) continue;
    files.push(file);
    if (file.endsWith(".tmp") || known(key)) continue;
    const last = lastRecord(new Uint8Array(fs.readFileSync(join(dir, file))));
    if (last !== null) states.set(key, last);
  }
  return { files, states };
}

/** `volume.vm1` → `volume/vm1`; null for any other name. */
function keyOf(file: string): string | null {
  const dot = file.indexOf(".");
  if (dot <= 0) return null;
  const key = `${file.slice(0, dot)}/${file.slice(dot + 1)}`;
  return isMetaKey(key) ? key : null;
}

function lastRecord(bytes: Uint8Array): Uint8Array | null {
  let last: Uint8Array | null = null;
  for (let at = 0; at + frameBytes <= bytes.length;) {
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, frameBytes);
    const length = view.getUint32(0);
    const record = bytes.subarray(at + frameBytes, at + frameBytes + length);
    if (record.length !== length || zlib.crc32(record) !== view.getUint32(4)) break;
    last = record.slice();
    at += frameBytes + length;
  }
  return last;
}

/**
 * Leaves the marker file at `DATA/paxos` once the log in `logDir` holds every
 * state: the old directory's files are taken in by then (AcceptorLog with
 * `legacyDir`), so it goes, and a file takes its name. An earlier version
 * fails to create its directory there (EEXIST) and stops, where it would
 * otherwise find no state and answer as an acceptor that never promised.
 * A log left in the old directory by a version between (the log under
 * `paxos/`) is moved first, before the log is opened.
 */
export function moveIntermediateLog(dataDir: string, logDir: string, logName: string): void {
  const old = join(dataDir, legacyDirName, logName);
  if (!fs.existsSync(old) || fs.existsSync(join(logDir, logName))) return;
  fs.mkdirSync(logDir, { recursive: true });
  fs.renameSync(old, join(logDir, logName));
  syncDirSync(logDir);
  syncDirSync(join(dataDir, legacyDirName));
}

/** Replaces the old directory, emptied, with the marker file (see moveIntermediateLog). */
export function retireLegacyDir(dataDir: string): void {
  const path = join(dataDir, legacyDirName);
  const stat = fs.statSync(path, { throwIfNoEntry: false });
  if (stat?.isFile()) return;
  if (stat?.isDirectory()) {
    for (const file of fs.readdirSync(path)) fs.rmSync(join(path, file), { force: true });
    fs.rmdirSync(path);
  }
  const tmp = `${path}.tmp`;
  const fd = fs.openSync(tmp, "w", 0o644);
  try {
    fs.writeSync(fd, markerText);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path);
  syncDirSync(dataDir);
}
