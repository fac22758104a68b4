/**
 * The real disk of a node's cluster state, in one place: acceptor states as an
 * append-only log per key, and the node's id and metadata configuration in a
 * JSON file. The simulation keeps the same state in memory instead.
 *
 * @module
 */
import * as fs from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { isMetaKey, syncDir } from "../../core/mod.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import type { AcceptorState } from "./caspaxos.ts";
import { type AcceptorIndex, decodeState, encodeState } from "./meta_service.ts";
import { isClusterId } from "../transport/mod.ts";
import { parseConfig } from "./config.ts";
import type { NodeConfigDisk, NodeConfigState } from "./node_config.ts";
const fdatasync = promisify(fs.fdatasync);
const headerBytes = 8;
/** A file is compacted when it holds more than this many times its last record. */
const compactFactor = 8;

/** CRC-32 (IEEE) of `bytes`. */
function crc32(bytes: Uint8Array): number {
  let crc = ~0;
  for (let i = 0; i < bytes.length; i++) crc = (crc >>> 8) ^ crcTable[(crc ^ bytes[i]) & 0xff];
  return ~crc >>> 0;
}
const crcTable = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/**
 * Durable acceptor states with one sync per save. Each key has a file of
 * appended records (u32 length, u32 CRC-32, then the state); a save appends
 * and `fdatasync`s, so a promise or an accept costs one sync instead of the
 * two of a write-and-rename (file, then directory). Loading takes the last
 * whole record: a record torn by a crash fails its checksum and is ignored,
 * which is right, since its save never completed. A file that grew to many
 * times its last record is rewritten (write, sync, rename, sync directory).
 */
export class AcceptorLog implements AcceptorIndex {
  readonly dir: string;
  #locks = new KeyedMutex();
  /** Open files: key → descriptor and size. */
  #files = new Map<string, { fd: number; size: number }>();

  constructor(dir: string) {
    this.dir = dir;
    fs.mkdirSync(dir, { recursive: true });
  }

  /** Keys with a state file, under `prefix` (e.g. `volume/`). */
  keys(prefix: string): string[] {
    return fs.readdirSync(this.dir).map(keyOf).filter((key) =>
      key !== null && key.startsWith(prefix)
    ) as string[];
  }

  load(key: string): Promise<AcceptorState | null> {
    return this.#locks.run(key, () => {
      const path = this.#path(key);
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(fs.readFileSync(path));
      } catch (error) {
        if ((error as { code?: string }).code === "ENOENT") return null;
        throw error;
      }
      let last: Uint8Array | null = null;
      for (let at = 0; at + headerBytes <= bytes.length;) {
        const view = new DataView(bytes.buffer, bytes.byteOffset + at, headerBytes);
        const length = view.getUint32(0), crc = view.getUint32(4);
        const record = bytes.subarray(at + headerBytes, at + headerBytes + length);
        if (record.length !== length || crc32(record) !== crc) break; // torn tail
        last = record;
        at += headerBytes + length;
      }
      return last === null ? null : decodeState(last);
    });
  }

  save(key: string, state: AcceptorState): Promise<void> {
    return this.#locks.run(key, async () => {
      const record = encodeState(state);
      const framed = new Uint8Array(headerBytes + record.length);
      const view = new DataView(framed.buffer);
      view.setUint32(0, record.length);
      view.setUint32(4, crc32(record));
      framed.set(record, headerBytes);
      let file = this.#files.get(key);
      if (file !== undefined && file.size + framed.length > compactFactor * framed.length) {
        fs.closeSync(file.fd);
        this.#files.delete(key);
        file = undefined;
        await this.#rewrite(key, framed);
        return;
      }
      if (file === undefined) {
        const path = this.#path(key);
        const existed = fs.existsSync(path);
        if (!existed) return await this.#rewrite(key, framed);
        const fd = fs.openSync(path, "a");
        file = { fd, size: fs.fstatSync(fd).size };
        this.#files.set(key, file);
      }
      fs.writeSync(file.fd, framed);
      file.size += framed.length;
      await fdatasync(file.fd);
    });
  }

  /** Closes the open files. */
  close(): void {
    for (const { fd } of this.#files.values()) fs.closeSync(fd);
    this.#files.clear();
  }

  /** Replaces the key's file with one record: write, sync, rename, sync the directory. */
  async #rewrite(key: string, framed: Uint8Array): Promise<void> {
    const path = this.#path(key);
    const tmp = `${path}.tmp`;
    const fd = fs.openSync(tmp, "w", 0o644);
    try {
      fs.writeSync(fd, framed);
      await fdatasync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path);
    await syncDir(this.dir);
  }

  #path(key: string): string {
    if (!isMetaKey(key)) throw new TypeError(`bad metadata key ${JSON.stringify(key)}`);
    return join(this.dir, key.replace("/", "."));
  }
}

function keyOf(file: string): string | null {
  if (file.endsWith(".tmp")) return null;
  const dot = file.indexOf(".");
  if (dot <= 0) return null;
  const key = `${file.slice(0, dot)}/${file.slice(dot + 1)}`;
  return isMetaKey(key) ? key : null;
}

/** The state kept in a JSON file, replaced atomically and synced. */
export function fileConfigDisk(path: string): { state: NodeConfigState; disk: NodeConfigDisk } {
  let state: NodeConfigState = { clusterId: null, config: null };
  try {
    const saved = JSON.parse(fs.readFileSync(path, "utf8"));
    state = {
      clusterId: typeof saved.clusterId === "string" && isClusterId(saved.clusterId)
        ? saved.clusterId
        : null,
      config: saved.config == null ? null : parseConfig(saved.config),
    };
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOENT") {
      throw new TypeError(`Cannot read cluster state ${path}: ${(error as Error).message}`);
    }
  }
  const disk: NodeConfigDisk = {
    save(next) {
      const tmp = `${path}.tmp`;
      const fd = fs.openSync(tmp, "w");
      try {
        fs.writeSync(fd, JSON.stringify(next) + "\n");
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, path);
      const dir = fs.openSync(dirname(path), "r");
      try {
        fs.fsyncSync(dir);
      } finally {
        fs.closeSync(dir);
      }
      return Promise.resolve();
    },
  };
  return { state, disk };
}
