/**
 * The real disk of a replica's journals (object_journal.ts): one file per
 * generation, `GEN.journal`, in a directory beside the data. Appends are
 * plain writes to the page cache; a sync is one `fdatasync` for every append
 * before it, and syncs asked while one runs share the next (group commit).
 * The simulation keeps journals in memory instead (cluster/sim/_memory_disk.ts).
 *
 * @module
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { syncDir } from "../../core/mod.ts";
import type { JournalStore } from "./object_journal.ts";

const fdatasync = promisify(fs.fdatasync);
const journalPattern = /^([0-9]{1,15})\.journal$/;

interface OpenJournal {
  fd: number;
  /** Bytes appended so far, and bytes known durable. */
  appended: number;
  synced: number;
  /** The sync under way, and the appended count it covers. */
  syncing: Promise<void> | null;
  /** The directory entry of a new file is not durable yet. */
  newFile: boolean;
}

/** See the module doc. */
export class JournalDisk implements JournalStore {
  readonly dir: string;
  #open = new Map<number, OpenJournal>();
  /** Journals ending in a partial record that could not be cut off: nothing more goes there. */
  #damaged = new Set<number>();

  constructor(dir: string) {
    this.dir = dir;
    fs.mkdirSync(dir, { recursive: true });
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
      wrote = fs.writevSync(journal.fd, parts);
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
  }

  /** Takes the journal back to its last whole record (the file opened to append writes at its end). */
  #cutBack(journal: OpenJournal, gen: number): void {
    try {
      fs.ftruncateSync(journal.fd, journal.appended);
    } catch {
      // Cannot: no later append may land after a partial record.
      this.#damaged.add(gen);
    }
  }

  async syncJournal(gen: number): Promise<void> {
    const journal = this.#open.get(gen);
    if (journal === undefined) return;
    const target = journal.appended;
    while (journal.synced < target) {
      if (journal.syncing === null) {
        const covers = journal.appended;
        journal.syncing = (async () => {
          await fdatasync(journal.fd);
          if (journal.newFile) {
            journal.newFile = false;
            await syncDir(this.dir);
          }
          journal.synced = Math.max(journal.synced, covers);
        })().finally(() => journal.syncing = null);
      }
      await journal.syncing;
    }
  }

  async removeJournal(gen: number): Promise<void> {
    const journal = this.#open.get(gen);
    if (journal !== undefined) {
      await journal.syncing?.catch(() => {});
      fs.closeSync(journal.fd);
      this.#open.delete(gen);
    }
    try {
      fs.unlinkSync(this.#path(gen));
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOENT") throw error;
    }
    await syncDir(this.dir);
  }

  /** Closes the open journals (appended but unsynced bytes stay as the page cache has them). */
  closeJournals(): void {
    for (const { fd } of this.#open.values()) fs.closeSync(fd);
    this.#open.clear();
  }

  #opened(gen: number): OpenJournal {
    let journal = this.#open.get(gen);
    if (journal === undefined) {
      const path = this.#path(gen);
      const newFile = !fs.existsSync(path);
      const fd = fs.openSync(path, "a", 0o644);
      const size = fs.fstatSync(fd).size;
      journal = { fd, appended: size, synced: size, syncing: null, newFile };
      this.#open.set(gen, journal);
    }
    return journal;
  }

  #path(gen: number): string {
    if (!Number.isSafeInteger(gen) || gen < 0) throw new RangeError(`bad journal ${gen}`);
    return join(this.dir, `${gen}.journal`);
  }
}
