/**
 * A node's durable acceptor states: one append-only log for every key, with
 * group commit, and every state kept in memory.
 *
 * The log is `acceptor-states.log` in its directory, frames of saves
 * (`_acceptor_log_format.ts`); the last entry of a key wins. A save resolves
 * once an `fdatasync` that covers it returns; the saves made while a sync runs
 * go together in the next frame and share the next sync, so a burst of
 * promises and accepts (many keys, many proposers) costs a sync or two, not
 * one each, a new key costs no file creation, and the node keeps one
 * descriptor however many keys it holds. Loads are answered from memory.
 *
 * Opening reads the log up to its torn tail (the last frame, damaged by a
 * crash before its sync returned: none of its saves returned) and writes the
 * log again without it, so that later appends are not hidden behind it. A
 * damaged frame followed by a whole one is a damaged disk: the log refuses to
 * open rather than forget what follows. When the log holds more than
 * {@linkcode compactFactor} times the live states (and at least 4 MiB), it is
 * rewritten with the live states alone: write, sync, rename, sync the
 * directory.
 *
 * Directories written before this log kept a file of records per key
 * (`_legacy_acceptor_files.ts`): opening takes in the last state of every key
 * the log does not hold, writes the log with them, and only then removes the
 * old files.
 *
 * @module
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { isMetaKey, syncDirSync } from "../../core/mod.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import type { AcceptorState } from "./caspaxos.ts";
import { type AcceptorIndex, decodeState, encodeState } from "./meta_service.ts";
import {
  legacyDirName,
  moveIntermediateLog,
  readLegacyStates,
  retireLegacyDir,
} from "./_legacy_acceptor_files.ts";
import { logger } from "../../log/mod.ts";
import {
  decodeEntries,
  encodeEntry,
  encodeFrame,
  entryBytes,
  frameAt,
  wholeFrameAfter,
} from "./_acceptor_log_format.ts";

const fdatasync = promisify(fs.fdatasync);
const log = logger("metadata");
const logName = "acceptor-states.log";
/** The log is rewritten when it holds more than this many times the live states... */
const compactFactor = 4;
/** ...and at least this many bytes (by default). */
const compactBytesMinDefault = 4 << 20;
/** Entries per frame when the live states are written out. */
const entriesPerFrame = 1024;

/** How an AcceptorLog compacts (tests make it small), and where an older layout may be. */
export interface AcceptorLogOptions {
  /** The log is not rewritten below this size. */
  compactBytesMin?: number;
  /** A directory of the layout before the log (a file per key) to take in; `dir` by default. */
  legacyDir?: string;
}

interface Queued {
  key: string;
  state: Uint8Array;
  entry: Uint8Array;
  done: () => void;
  failed: (error: Error) => void;
}

/** See the module doc. */
export class AcceptorLog implements AcceptorIndex {
  readonly dir: string;
  readonly #path: string;
  /** Key → its latest durable state, encoded. */
  #states = new Map<string, Uint8Array>();
  /** Bytes of the live states' entries. */
  #liveBytes = 0;
  #fd: number;
  #size: number;
  #queue: Queued[] = [];
  #writing = false;
  /**
   * Set once a sync failed, or a failed write could not be cut back off the
   * log: nothing more goes to this log until a restart.
   */
  #broken: Error | null = null;
  /** One save per key at a time, so that the log's order is each key's order. */
  #locks = new KeyedMutex();
  #compactBytesMin: number;
  #syncs = 0;
  #writeErrors = 0;
  #closed = false;

  constructor(dir: string, options: AcceptorLogOptions = {}) {
    this.dir = dir;
    this.#path = join(dir, logName);
    this.#compactBytesMin = options.compactBytesMin ?? compactBytesMinDefault;
    fs.mkdirSync(dir, { recursive: true });
    const exists = fs.existsSync(this.#path);
    const bytes = exists ? new Uint8Array(fs.readFileSync(this.#path)) : new Uint8Array();
    const whole = this.#replay(bytes);
    const legacyDir = options.legacyDir ?? dir;
    const legacy = readLegacyStates(legacyDir, (key) => this.#states.has(key));
    for (const [key, state] of legacy.states) this.#remember(key, state);
    if (!exists || whole < bytes.length || legacy.files.length > 0) {
      // One log of every state, in place before the old files go (they are read again
      // if a crash comes first, and the log wins over them).
      fs.renameSync(this.#writeStates(), this.#path);
      syncDirSync(dir);
      for (const file of legacy.files) fs.rmSync(join(legacyDir, file), { force: true });
      if (legacy.files.length > 0) syncDirSync(legacyDir);
    }
    this.#fd = fs.openSync(this.#path, "a");
    this.#size = fs.fstatSync(this.#fd).size;
  }

  /** Syncs of the log so far (saves share them). */
  get syncs(): number {
    return this.#syncs;
  }

  /** Batches of saves whose write failed (a full disk) and that were cut back off the log. */
  get writeErrors(): number {
    return this.#writeErrors;
  }

  /** Bytes in the log now. */
  get bytes(): number {
    return this.#size;
  }

  /** Keys with a state. */
  get size(): number {
    return this.#states.size;
  }

  /** Why the log takes no more saves (a sync failed); null while it works. */
  get failure(): string | null {
    return this.#broken?.message ?? null;
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
    if (this.#closed) return Promise.reject(new Error(`Cannot save to ${this.#path}: closed`));
    const encoded = encodeState(state);
    const entry = encodeEntry(key, encoded);
    return this.#locks.run(key, () =>
      new Promise<void>((done, failed) => {
        if (this.#closed) return failed(new Error(`Cannot save to ${this.#path}: closed`));
        this.#queue.push({ key, state: encoded, entry, done, failed });
        if (!this.#writing) this.#drain();
      }));
  }

  /**
   * Closes the log (every save that resolved is durable): a batch being
   * written is finished first, and saves not written yet fail.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#writing) fs.closeSync(this.#fd);
  }

  /** Writes and syncs what is queued, a frame per batch, until the queue is empty. */
  async #drain(): Promise<void> {
    this.#writing = true;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0);
      const fail = (error: Error) => {
        for (const queued of batch) queued.failed(error);
      };
      if (this.#broken !== null) {
        fail(this.#broken);
        continue;
      }
      try {
        // A write that fails (a full disk) is cut back off the log: the next batch may pass.
        this.#append(encodeFrame(batch.map((queued) => queued.entry)));
      } catch (error) {
        this.#writeErrors++;
        fail(new Error(`Cannot save to ${this.#path}: ${(error as Error).message}`));
        continue;
      }
      try {
        await fdatasync(this.#fd);
      } catch (error) {
        // After a failed sync the page cache may have dropped what it could not write
        // and a later sync would pass: no state saved after this one can be trusted.
        this.#fail(`Cannot save to ${this.#path}: ${error}`);
        fail(this.#broken!);
        continue;
      }
      this.#syncs++;
      for (const queued of batch) this.#remember(queued.key, queued.state);
      for (const queued of batch) queued.done();
      if (this.#size > this.#compactBytesMin && this.#size > compactFactor * this.#liveBytes) {
        this.#compact();
      }
    }
    this.#writing = false;
    if (this.#closed) fs.closeSync(this.#fd);
  }

  #append(frame: Uint8Array): void {
    let wrote = 0;
    try {
      wrote = fs.writeSync(this.#fd, frame);
    } finally {
      if (wrote !== frame.length) {
        // A short write (a full disk): the frame goes, or the log takes no more.
        try {
          fs.ftruncateSync(this.#fd, this.#size);
        } catch (error) {
          this.#fail(`Cannot cut ${this.#path} back: ${error}`);
        }
      }
    }
    if (wrote !== frame.length) {
      throw new Error(`Cannot append to ${this.#path}: wrote ${wrote} of ${frame.length}`);
    }
    this.#size += wrote;
  }

  /**
   * Replaces the log with the live states. Until the rename the old log stays
   * whole and in use (a failure there leaves it so); after it, appends to the
   * old file would be lost, so a failure stops the log.
   */
  #compact(): void {
    let tmp: string;
    try {
      tmp = this.#writeStates();
    } catch {
      return;
    }
    try {
      fs.renameSync(tmp, this.#path);
      syncDirSync(this.dir);
      const fd = fs.openSync(this.#path, "a");
      fs.closeSync(this.#fd);
      this.#fd = fd;
      this.#size = fs.fstatSync(fd).size;
    } catch (error) {
      this.#fail(`Cannot compact ${this.#path}: ${error}`);
    }
  }

  /** Writes every live state to the log's name + `.tmp`, synced; returns that name. */
  #writeStates(): string {
    const tmp = `${this.#path}.tmp`;
    const fd = fs.openSync(tmp, "w", 0o644);
    try {
      const entries = [...this.#states].map(([key, state]) => encodeEntry(key, state));
      for (let at = 0; at < entries.length; at += entriesPerFrame) {
        const frame = encodeFrame(entries.slice(at, at + entriesPerFrame));
        if (fs.writeSync(fd, frame) !== frame.length) throw new Error(`short write to ${tmp}`);
      }
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    return tmp;
  }

  /** Takes in the whole frames of `bytes`; returns where the torn tail starts. */
  #replay(bytes: Uint8Array): number {
    let at = 0;
    for (let frame; (frame = frameAt(bytes, at)) !== null; at = frame.end) {
      let entries;
      try {
        entries = decodeEntries(frame.body);
      } catch (error) {
        throw this.#damaged(at, `a frame holding ${(error as Error).message}`);
      }
      for (const [key, state] of entries) this.#remember(key, state);
    }
    if (wholeFrameAfter(bytes, at)) throw this.#damaged(at, "a damaged frame");
    return at;
  }

  /** Stops the log (the first reason stays), and says so once. */
  #fail(reason: string): void {
    if (this.#broken !== null) return;
    this.#broken = new Error(reason);
    log.error(
      "{reason}; this node's acceptor takes no more promises or accepts until it restarts " +
        "(the other voters go on)",
      { reason },
    );
  }

  #damaged(at: number, what: string): Error {
    return new Error(
      `Cannot open ${this.#path}: ${what} at byte ${at}, before whole ones ` +
        `(the disk damaged it: a crash only tears the last frame)`,
    );
  }

  #remember(key: string, state: Uint8Array): void {
    const before = this.#states.get(key);
    if (before !== undefined) this.#liveBytes -= entryBytes(key, before);
    this.#states.set(key, state);
    this.#liveBytes += entryBytes(key, state);
  }
}

/**
 * The acceptor log of the node whose data directory is `dataDir`
 * (`DATA/acceptors/`), taking in the states an earlier version kept in
 * `DATA/paxos/`, and leaving a file there that stops such a version from
 * starting on this directory again.
 */
export function openNodeAcceptorLog(dataDir: string): AcceptorLog {
  const dir = join(dataDir, "acceptors");
  moveIntermediateLog(dataDir, dir, logName);
  const legacy = join(dataDir, legacyDirName);
  const log = new AcceptorLog(dir, {
    legacyDir: fs.statSync(legacy, { throwIfNoEntry: false })?.isDirectory() ? legacy : undefined,
  });
  try {
    retireLegacyDir(dataDir);
  } catch (error) {
    log.close();
    throw error;
  }
  return log;
}

function badKey(key: string): TypeError {
  return new TypeError(`bad metadata key ${JSON.stringify(key)}`);
}
