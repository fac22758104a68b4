/**
 * The real disk of a replica's journals (object_journal.ts): one file per
 * generation, `GEN.journal`, in a directory beside the data. Appends are
 * plain writes to the page cache; a sync is one `fdatasync` for every append
 * before it, and syncs asked while one runs share the next (group commit).
 *
 * A journal asked to sync since its last append starts a sync as its next
 * append is answered (its writer flushes after its writes, as a guest with
 * `fsync=1` or a database commit does): nobody waits for that sync, so the write is answered
 * as soon as it is in the page cache, but by the time its FLUSH arrives (a
 * round trip later) the sync is mostly done, and the FLUSH waits only for what
 * is left. Appends that no sync follows (writes between flushes, a stream at
 * depth) start nothing: syncing each of them took a quarter of the random
 * write rate (decisions.md: "Syncs started ahead of a FLUSH"). A sync
 * that fails fails every later one of that journal: after a failed
 * `fdatasync` the kernel may have dropped the pages, and a later sync that
 * succeeds proves nothing about them.
 *
 * A journal this process creates is written ahead with zeros, a MiB past its
 * last append, and its records land on those zeros: once a sync has made the
 * zeros' blocks and the file's size durable, the `fdatasync` of a FLUSH only
 * writes the records back, without a commit of the file system's journal for
 * a file that grew (here 0.09–0.11 ms against 0.17–0.18 alone, 0.11–0.17
 * against 0.28–0.35 with three processes syncing at once: decisions.md,
 * "Journals written on zeros"). A replay stops at the zeros as at a torn
 * tail (object_journal.ts: a record's length is never 0). A journal found on
 * disk is never appended to (recovery starts a new one).
 * The simulation keeps journals in memory instead (cluster/sim/_memory_disk.ts).
 *
 * @module
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { setImmediate } from "node:timers";
import { syncDir, writeAll } from "../../core/mod.ts";
import type { JournalStore } from "./object_journal.ts";

const fdatasync = promisify(fs.fdatasync);
const journalPattern = /^([0-9]{1,15})\.journal$/;
/** Zeros written ahead of a new journal's appends, a step at a time... */
const zeroStepBytes = 1024 * 1024;
/** ...once the appends come this close to the end of the zeros. */
const zeroLowWaterBytes = 256 * 1024;
const zeros = new Uint8Array(zeroStepBytes);
/** The staging buffer's first size: a record of a change journalled whole (under 128 KiB). */
const stagingBytes = 160 * 1024;

interface OpenJournal {
  fd: number;
  /** Bytes appended so far, and bytes known durable. */
  appended: number;
  synced: number;
  /** The sync under way, and the appended count it covers. */
  syncing: Promise<void> | null;
  /** The directory entry of a new file is not durable yet. */
  newFile: boolean;
  /** The first sync that failed: every later one fails with it. */
  failed: Error | null;
  /** Let go of: no sync starts, and the one under way closes the descriptor when it ends. */
  closing: boolean;
  /** A sync was asked since the last append: the next append starts one. */
  syncAsked: boolean;
  /** Appends land on the zeros written up to `zeroedTo`; false once writing zeros failed. */
  zeroing: boolean;
  zeroedTo: number;
}

/** See the module doc. */
export class JournalDisk implements JournalStore {
  readonly dir: string;
  #open = new Map<number, OpenJournal>();
  /** Journals ending in a partial record that could not be cut off: nothing more goes there. */
  #damaged = new Set<number>();
  #syncs = 0;
  #syncsAhead = 0;
  #failure: Error | null = null;
  /** Where an append's parts are gathered for one write (grown to the largest append). */
  #staging = new Uint8Array(stagingBytes);

  constructor(dir: string) {
    this.dir = dir;
    fs.mkdirSync(dir, { recursive: true });
  }

  /** `fdatasync`s done, and those of them started ahead of a FLUSH (see the module doc). */
  get syncs(): { done: number; ahead: number } {
    return { done: this.#syncs, ahead: this.#syncsAhead };
  }

  /** The first sync that failed, of any journal (its replica's flushes fail from then on). */
  get failure(): Error | null {
    return this.#failure;
  }

  journals(): Promise<number[]> {
    const gens = fs.readdirSync(this.dir).map((file) => journalPattern.exec(file))
      .filter((match) => match !== null).map((match) => Number(match![1]));
    return Promise.resolve(gens.sort((a, b) => a - b));
  }

  readJournal(gen: number): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(fs.readFileSync(this.#path(gen))));
  }

  appendJournal(gen: number, parts: Uint8Array[]): void {
    if (this.#damaged.has(gen)) {
      throw new Error(`Cannot append to journal ${this.#path(gen)}: it ends in a partial record`);
    }
    const journal = this.#opened(gen);
    const expected = parts.reduce((sum, part) => sum + part.length, 0);
    let wrote = 0;
    try {
      wrote = this.#write(journal.fd, parts, expected, journal.appended);
    } catch (error) {
      this.#cutBack(journal, gen);
      throw error;
    }
    if (wrote !== expected) {
      // A short write (a full disk): a partial record would end every replay there,
      // hiding the records appended after it, so it goes.
      this.#cutBack(journal, gen);
      throw new Error(`Cannot append to journal ${this.#path(gen)}: wrote ${wrote} of ${expected}`);
    }
    journal.appended += wrote;
    if (journal.zeroing && journal.appended + zeroLowWaterBytes > journal.zeroedTo) {
      this.#zeroAhead(journal);
    }
    if (journal.syncAsked) {
      // In the next turn, not under the caller's feet: the answer to this append, queued after
      // this, is written right after the sync is handed to a worker thread (`strace`, session 43;
      // a turn later still made no difference: performance.md, session 36).
      setImmediate(() => {
        if (journal.syncing !== null || journal.closing || journal.synced >= journal.appended) {
          return;
        }
        this.#syncsAhead++;
        this.#startSync(journal).catch(() => {});
      });
    }
    journal.syncAsked = false;
  }

  /**
   * Writes `parts` (`bytes` in all) at `position` in one call, gathered in the
   * staging buffer: Deno's `fs.writevSync` copies each part through a Buffer
   * and took 24-33 µs for a 4 KiB record against 4-6 for a copy and one
   * `writeSync` (decisions.md, "Buffered writes in pieces of 64 KiB").
   * Returns the bytes written (short on a full disk).
   */
  #write(fd: number, parts: Uint8Array[], bytes: number, position: number): number {
    if (parts.length === 1) return fs.writeSync(fd, parts[0], 0, bytes, position);
    if (this.#staging.length < bytes) this.#staging = new Uint8Array(bytes);
    let at = 0;
    for (const part of parts) {
      this.#staging.set(part, at);
      at += part.length;
    }
    return fs.writeSync(fd, this.#staging, 0, bytes, position);
  }

  /**
   * Writes zeros from the end of the zeros (or of the appends) to a step past
   * the appends. A failure (a full disk) leaves the file as it is: the appends
   * go on past the zeros, and a replay stops at the end of the file instead.
   */
  #zeroAhead(journal: OpenJournal): void {
    const from = Math.max(journal.zeroedTo, journal.appended);
    const to = journal.appended + zeroStepBytes;
    try {
      // In pieces, as every buffered write: the appends then land in small folios.
      writeAll(journal.fd, zeros.subarray(0, to - from), from);
      journal.zeroedTo = to;
    } catch {
      journal.zeroing = false;
    }
  }

  /** Takes the journal back to its last whole record (the zeros ahead go too). */
  #cutBack(journal: OpenJournal, gen: number): void {
    try {
      fs.ftruncateSync(journal.fd, journal.appended);
      journal.zeroedTo = journal.appended;
    } catch {
      // Cannot: no later append may land after a partial record.
      this.#damaged.add(gen);
    }
  }

  async syncJournal(gen: number): Promise<void> {
    const journal = this.#open.get(gen);
    if (journal === undefined) return;
    journal.syncAsked = true;
    const target = journal.appended;
    while (journal.synced < target) {
      if (journal.failed !== null) throw journal.failed;
      await (journal.syncing ?? this.#startSync(journal));
    }
  }

  /** One `fdatasync` covering every append so far. */
  #startSync(journal: OpenJournal): Promise<void> {
    const covers = journal.appended;
    const syncing = (async () => {
      try {
        if (journal.failed !== null) throw journal.failed;
        await fdatasync(journal.fd);
        this.#syncs++;
        if (journal.newFile) {
          journal.newFile = false;
          await syncDir(this.dir);
        }
        journal.synced = Math.max(journal.synced, covers);
      } catch (error) {
        journal.failed ??= error instanceof Error ? error : new Error(String(error));
        this.#failure ??= journal.failed;
        throw journal.failed;
      } finally {
        journal.syncing = null;
        if (journal.closing) fs.closeSync(journal.fd);
      }
    })();
    journal.syncing = syncing;
    return syncing;
  }

  async removeJournal(gen: number): Promise<void> {
    const journal = this.#open.get(gen);
    if (journal !== undefined) {
      this.#open.delete(gen);
      journal.closing = true;
      if (journal.syncing === null) fs.closeSync(journal.fd);
      else await journal.syncing.catch(() => {});
    }
    try {
      fs.unlinkSync(this.#path(gen));
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOENT") throw error;
    }
    await syncDir(this.dir);
  }

  /**
   * Closes the open journals (appended but unsynced bytes stay as the page
   * cache has them); one with a sync under way is closed when that sync ends.
   */
  closeJournals(): void {
    for (const journal of this.#open.values()) {
      journal.closing = true;
      if (journal.syncing === null) fs.closeSync(journal.fd);
    }
    this.#open.clear();
  }

  #opened(gen: number): OpenJournal {
    let journal = this.#open.get(gen);
    if (journal === undefined) {
      const path = this.#path(gen);
      // A journal found on disk ends in zeros, or in a record a crash tore: what is
      // appended after either is never replayed (recovery starts a new journal).
      if (fs.existsSync(path)) {
        throw new Error(`Cannot append to journal ${path}: it was written before this start`);
      }
      const fd = fs.openSync(path, "wx", 0o644);
      journal = {
        fd,
        appended: 0,
        synced: 0,
        syncing: null,
        newFile: true,
        failed: null,
        closing: false,
        syncAsked: false,
        zeroing: true,
        zeroedTo: 0,
      };
      this.#open.set(gen, journal);
    }
    return journal;
  }

  #path(gen: number): string {
    if (!Number.isSafeInteger(gen) || gen < 0) throw new RangeError(`bad journal ${gen}`);
    return join(this.dir, `${gen}.journal`);
  }
}
