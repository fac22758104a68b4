/**
 * A node's durable acceptor states: one append-only log for every key, with
 * group commit, and every state kept in memory.
 *
 * The log is `acceptor-states.log` in its directory. A record is u32 length,
 * u32 CRC-32 of the body, then the body: u16 key length, the key, the encoded
 * state (`encodeState`). The last record of a key wins. A save appends its
 * record and resolves once an `fdatasync` that covers it returns; saves made
 * while a sync runs share the next one, so a burst of promises and accepts
 * (many keys, many proposers) costs a sync or two, not one each, and a new key
 * costs no file creation. Loads are answered from memory.
 *
 * Opening reads the log up to its first torn or damaged record (a crash cut
 * it; that save never returned) and cuts the file there, so that later
 * appends are not hidden behind it. When the log holds more than
 * {@linkcode compactFactor} times the bytes of the live states (and at least
 * 4 MiB), it is rewritten with the live states alone:
 * write, sync, rename, sync the directory.
 *
 * Directories written before this log kept a file of records per key
 * (`kind.NAME`, same framing without the key): opening takes their last whole
 * record for every key the log does not hold, writes one log with them, and
 * only then removes the old files.
 *
 * @module
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { isMetaKey, syncDirSync } from "../../core/mod.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import type { AcceptorState } from "./caspaxos.ts";
import { type AcceptorIndex, decodeState, encodeState } from "./meta_service.ts";
import { readLegacyStates } from "./_legacy_acceptor_files.ts";

const fdatasync = promisify(fs.fdatasync);
const logName = "acceptor-states.log";
const frameBytes = 8;
const keyLengthBytes = 2;
/** The log is rewritten when it holds more than this many times the live states... */
const compactFactor = 4;
/** ...and at least this many bytes (by default). */
const compactBytesMinDefault = 4 << 20;

/** How an AcceptorLog compacts (tests make it small). */
export interface AcceptorLogOptions {
  /** The log is not rewritten below this size. */
  compactBytesMin?: number;
}
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Queued {
  key: string;
  state: Uint8Array;
  framed: Uint8Array;
  done: () => void;
  failed: (error: Error) => void;
}

/** See the module doc. */
export class AcceptorLog implements AcceptorIndex {
  readonly dir: string;
  /** Key → its latest durable state, encoded. */
  #states = new Map<string, Uint8Array>();
  /** Bytes of the live states' records. */
  #liveBytes = 0;
  #fd: number;
  #size: number;
  #queue: Queued[] = [];
  #writing = false;
  /** Set when an append failed part-way: nothing more goes to this log until a restart. */
  #broken: Error | null = null;
  /** One save per key at a time, so that the log's order is each key's order. */
  #locks = new KeyedMutex();
  #compactBytesMin: number;
  #syncs = 0;

  constructor(dir: string, options: AcceptorLogOptions = {}) {
    this.dir = dir;
    this.#compactBytesMin = options.compactBytesMin ?? compactBytesMinDefault;
    fs.mkdirSync(dir, { recursive: true });
    const path = join(dir, logName);
    const bytes = fs.existsSync(path) ? new Uint8Array(fs.readFileSync(path)) : new Uint8Array();
    const whole = this.#replay(bytes);
    const legacy = readLegacyStates(dir, (key) => this.#states.has(key));
    for (const [key, state] of legacy.states) this.#remember(key, state);
    if (legacy.files.length > 0 || whole < bytes.length || !fs.existsSync(path)) {
      // One log of every state, in place before the old files go (they are read again
      // if a crash comes first, and the log wins over them).
      this.#fd = this.#writeCompacted(path);
      for (const file of legacy.files) fs.rmSync(join(dir, file), { force: true });
      if (legacy.files.length > 0) syncDirSync(dir);
    } else {
      this.#fd = fs.openSync(path, "a");
    }
    this.#size = fs.fstatSync(this.#fd).size;
  }

  /** Syncs of the log so far (saves share them). */
  get syncs(): number {
    return this.#syncs;
  }

  /** Bytes in the log now. */
  get bytes(): number {
    return this.#size;
  }

  /** Keys with a state, under `prefix` (e.g. `volume/`). */
  keys(prefix: string): string[] {
    return [...this.#states.keys()].filter((key) => key.startsWith(prefix)).sort();
  }

  load(key: string): Promise<AcceptorState | null> {
    if (!isMetaKey(key)) return Promise.reject(badKey(key));
    const state = this.#states.get(key);
    return Promise.resolve(state === undefined ? null : decodeState(state));
  }

  save(key: string, state: AcceptorState): Promise<void> {
    if (!isMetaKey(key)) return Promise.reject(badKey(key));
    const encoded = encodeState(state);
    return this.#locks.run(key, () =>
      new Promise<void>((done, failed) => {
        this.#queue.push({ key, state: encoded, framed: frame(key, encoded), done, failed });
        if (!this.#writing) this.#drain();
      }));
  }

  /** Closes the log (every save that resolved is durable). */
  close(): void {
    fs.closeSync(this.#fd);
  }

  /** Writes and syncs what is queued, in batches, until the queue is empty. */
  async #drain(): Promise<void> {
    this.#writing = true;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0);
      try {
        if (this.#broken !== null) throw this.#broken;
        this.#append(batch.map((queued) => queued.framed));
        await fdatasync(this.#fd);
      } catch (error) {
        // After a failed sync the page cache may have dropped what it could not write
        // and a later sync would pass: no state saved after this one can be trusted.
        this.#broken ??= new Error(`Cannot save to ${join(this.dir, logName)}: ${error}`);
        for (const queued of batch) queued.failed(error as Error);
        continue;
      }
      this.#syncs++;
      for (const queued of batch) this.#remember(queued.key, queued.state);
      for (const queued of batch) queued.done();
      if (this.#size > this.#compactBytesMin && this.#size > compactFactor * this.#liveBytes) {
        try {
          this.#compact();
        } catch (error) {
          this.#broken ??= new Error(`Cannot compact ${join(this.dir, logName)}: ${error}`);
        }
      }
    }
    this.#writing = false;
  }

  #append(parts: Uint8Array[]): void {
    const expected = parts.reduce((sum, part) => sum + part.length, 0);
    let wrote = 0;
    try {
      wrote = fs.writevSync(this.#fd, parts);
    } finally {
      if (wrote !== expected) this.#cutBack(expected, wrote);
    }
    this.#size += wrote;
  }

  /** A short or failed write: the log goes back to its last whole record, or takes no more. */
  #cutBack(expected: number, wrote: number): void {
    try {
      fs.ftruncateSync(this.#fd, this.#size);
    } catch (error) {
      this.#broken = new Error(`Cannot cut ${join(this.dir, logName)} back: ${error}`);
    }
    throw new Error(`Cannot append to ${join(this.dir, logName)}: wrote ${wrote} of ${expected}`);
  }

  #compact(): void {
    fs.closeSync(this.#fd);
    this.#fd = this.#writeCompacted(join(this.dir, logName));
    this.#size = fs.fstatSync(this.#fd).size;
  }

  /** Writes every live state to a new log in place of `path`; returns it open to append. */
  #writeCompacted(path: string): number {
    const tmp = `${path}.tmp`;
    const fd = fs.openSync(tmp, "w", 0o644);
    try {
      const parts = [...this.#states].map(([key, state]) => frame(key, state));
      for (let at = 0; at < parts.length; at += 1024) {
        const chunk = parts.slice(at, at + 1024);
        const expected = chunk.reduce((sum, part) => sum + part.length, 0);
        if (fs.writevSync(fd, chunk) !== expected) throw new Error(`short write to ${tmp}`);
      }
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path);
    syncDirSync(this.dir);
    return fs.openSync(path, "a");
  }

  /** Takes in the whole records of `bytes`; returns where the first bad one starts. */
  #replay(bytes: Uint8Array): number {
    let at = 0;
    while (at + frameBytes <= bytes.length) {
      const view = new DataView(bytes.buffer, bytes.byteOffset + at, frameBytes);
      const length = view.getUint32(0);
      const body = bytes.subarray(at + frameBytes, at + frameBytes + length);
      if (body.length !== length || length < keyLengthBytes) break;
      if (zlib.crc32(body) !== view.getUint32(4)) break;
      const keyLength = (body[0] << 8) | body[1];
      if (length < keyLengthBytes + keyLength) break;
      const key = decoder.decode(body.subarray(keyLengthBytes, keyLengthBytes + keyLength));
      if (!isMetaKey(key)) break;
      this.#remember(key, body.slice(keyLengthBytes + keyLength));
      at += frameBytes + length;
    }
    return at;
  }

  #remember(key: string, state: Uint8Array): void {
    const before = this.#states.get(key);
    if (before !== undefined) this.#liveBytes -= recordBytes(key, before);
    this.#states.set(key, state);
    this.#liveBytes += recordBytes(key, state);
  }
}

function badKey(key: string): TypeError {
  return new TypeError(`bad metadata key ${JSON.stringify(key)}`);
}

function recordBytes(key: string, state: Uint8Array): number {
  return frameBytes + keyLengthBytes + key.length + state.length;
}

/** The record of `key`'s `state`: frame, key length, key, state. */
function frame(key: string, state: Uint8Array): Uint8Array {
  const keyBytes = encoder.encode(key);
  const record = new Uint8Array(frameBytes + keyLengthBytes + keyBytes.length + state.length);
  const view = new DataView(record.buffer);
  view.setUint16(frameBytes, keyBytes.length);
  record.set(keyBytes, frameBytes + keyLengthBytes);
  record.set(state, frameBytes + keyLengthBytes + keyBytes.length);
  const body = record.subarray(frameBytes);
  view.setUint32(0, body.length);
  view.setUint32(4, zlib.crc32(body));
  return record;
}
