/**
 * A replica's changes written in place (object_service.ts): the file is
 * synced before their records go to the journal, so a record never claims
 * bytes the disk may not hold; and a change answered while its write was
 * still under way (NodeDisk.startObjectWrite) whose write then failed gives
 * the copy up. The caller holds the object's lock around each call.
 */
import type { NodeDisk } from "../../core/mod.ts";
import { logger } from "../../log/mod.ts";
import type { JournalRecord } from "./object_journal.ts";
import type { ReplicaJournal } from "./_replica_journal.ts";
import { compareStamps, type Stamp } from "./object_link.ts";

const log = logger("replica");

/** See the module doc. */
export class PlacedChanges {
  #engine: NodeDisk;
  #journal: ReplicaJournal;
  /** Records of changes written in place whose file is not synced yet, per object, in order. */
  #placed = new Map<string, JournalRecord[]>();
  /** Copies given up because a write answered for failed (lost()), ever. */
  #lostCopies = 0;

  constructor(engine: NodeDisk, journal: ReplicaJournal) {
    this.#engine = engine;
    this.#journal = journal;
  }

  /** How many copies lost() gave up so far: a flush that saw it move looks again. */
  get lostCopies(): number {
    return this.#lostCopies;
  }

  /** Objects with changes placed and not settled yet. */
  names(): string[] {
    return [...this.#placed.keys()];
  }

  /** A change placed in its file (its stamp applied): its record follows the file's sync. */
  add(record: JournalRecord): void {
    this.#placed.set(record.name, [...this.#placed.get(record.name) ?? [], record]);
  }

  /** Syncs the file of `name` when changes were placed in it, then journals their records. */
  async settle(name: string): Promise<void> {
    const placed = this.#placed.get(name);
    if (placed === undefined) return;
    await this.#engine.syncObjects([name]);
    // One at a time: a record that cannot be written stays for the next flush to try.
    while (placed.length > 0) {
      this.#journal.append(placed[0]);
      placed.shift();
    }
    this.#placed.delete(name);
  }

  /**
   * A write of `name` answered for failed (the change made the copy `stamp`;
   * `stamps`: its volume's): unless a later change replaced the copy whole, it
   * is given up as ObjectReplica.drop() does, so that it is neither read nor
   * counted and its writer finds it behind and replaces it. Until then its
   * reads and syncs throw (NodeDisk.startObjectWrite): no flush answers for it.
   */
  async lost(name: string, stamp: Stamp, stamps: Map<string, Stamp>): Promise<void> {
    if (compareStamps(stamps.get(name) ?? [0, 0], stamp) !== 0) return;
    this.#placed.delete(name);
    this.#lostCopies++;
    try {
      await this.#journal.remove({ kind: "drop", name }, stamps);
    } catch (failure) {
      // Forgotten here all the same, so that its writer replaces it whole; the journal
      // still holds the stamp the copy had before the change (as after a crash).
      stamps.delete(name);
      log.error("cannot record giving object {name} up: {failure}", {
        name,
        failure: String(failure),
      });
    }
  }
}
