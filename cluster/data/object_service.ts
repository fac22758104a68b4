/**
 * Volume objects on a storing node (a replica), with two guards:
 *
 * - Fencing (fences.ts) (DESIGN.md invariant 3): every write carries the writer's lease epoch
 *   for the volume; the node remembers, durably, the highest epoch it has seen per
 *   volume and refuses writes with a lower one. A holder that was cut off and
 *   replaced can therefore never change the volume again, whatever it believes.
 * - Stamps: each copy of an object has a stamp (writer's epoch, version); the writer
 *   advances the version by one per change. A replica applies a change only on top
 *   of the version before it, so a replica that missed one answers "behind"
 *   instead of holding a mix; the writer then replaces its copy whole (`replace`,
 *   applied only when newer). Readers on other nodes read the copy with the
 *   highest stamp.
 * - Durability (object_journal.ts, _replica_journal.ts): every change applied
 *   goes to the replica's journal, data and stamp in one record, so a flush is
 *   one sync of the journal and a stamp that survives a crash always comes with
 *   its bytes. Large changes are written in place: the file is synced before
 *   their record goes to the journal.
 */
import type { NodeDisk } from "../../core/mod.ts";
import { isObjectName } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import { KeyedMutex } from "../../core/_mutex.ts";
import { logger } from "../../log/mod.ts";
import { Fences } from "./fences.ts";
import type { JournalRecord, JournalStore } from "./object_journal.ts";
import { ReplicaJournal } from "./_replica_journal.ts";
import { PlacedChanges } from "./_placed_changes.ts";
import {
  type ChangeReply,
  compareStamps,
  objectBytesMax,
  type ObjectChange,
  type ObjectLink,
  type Stamp,
} from "./object_link.ts";

const unwritten: Stamp = [0, 0];
const log = logger("replica");

/** Options of {@linkcode ObjectReplica}. */
export interface ObjectReplicaOptions {
  /** Where the journal goes (journal_disk.ts beside the data; memory in a simulation). */
  journal: JournalStore;
  /** Journal bytes after which a checkpoint starts (tests make it small). */
  checkpointBytes?: number;
  /** Changes of at least this many bytes go to their file alone (object_journal.ts, `placed`). */
  inPlaceBytes?: number;
  /**
   * This node's placement of an object (placementDigest() of its members' ids),
   * compared with a writer's (`ObjectChange.placement`); none: never compared.
   */
  placementOf?: (name: string) => number;
}

/** Changes this large are written in place, not copied into the journal as well. */
export const inPlaceBytesDefault = 128 * 1024;

/** The objects this node stores, with their versions and fences. */
export class ObjectReplica implements ObjectLink {
  readonly id: string;
  readonly fences: Fences;
  #engine: NodeDisk;
  #journal: ReplicaJournal;
  #store: JournalStore;
  /** The replay of the journals a crash left; every call waits for it. */
  #ready: Promise<void>;
  /** True once the replay is done. */
  #recovered = false;
  #locks = new KeyedMutex();
  #inPlaceBytes: number;
  #placementOf: ((name: string) => number) | undefined;
  /** Changes written in place whose records wait for their file's sync. */
  #placed: PlacedChanges;
  /** Objects writers said other replicas lack, since healing last asked (short()). */
  #short = 0;

  constructor(id: string, engine: NodeDisk, options: ObjectReplicaOptions) {
    this.id = id;
    this.#engine = engine;
    this.#store = options.journal;
    this.fences = new Fences(engine);
    this.#journal = new ReplicaJournal(engine, options.journal, options.checkpointBytes);
    this.#placed = new PlacedChanges(engine, this.#journal);
    this.#inPlaceBytes = options.inPlaceBytes ?? inPlaceBytesDefault;
    this.#placementOf = options.placementOf;
    this.#ready = this.#journal.recover();
    this.#ready.then(() => this.#recovered = true, () => {}); // a failure: reported by every call
  }

  /**
   * Applies `change` to this copy if it follows on from it (see ObjectChange);
   * says `moved` when the writer places the object elsewhere than this node.
   * `fromPeer`: the change came from another node (its writer, or healing),
   * so this copy is not what its volume is read from: a large change is
   * written around the page cache (docs/decisions.md, "A replica's copies
   * around the page cache"); this node's own large change only when it adds
   * bytes to the object (a fill: "The writer's own copy of a fill around the
   * page cache"), since the volume's reads here come from this copy. `keep`:
   * the caller keeps `change.data` as it is until the promise it is given
   * settles, so a large change from a peer may be answered once its write is
   * under way (NodeDisk.startObjectWrite); a write that fails then gives the
   * copy up (#lost).
   */
  async change(
    name: string,
    change: ObjectChange,
    options: { fromPeer?: boolean; keep?: (written: Promise<void>) => void } = {},
  ): Promise<ChangeReply> {
    const reply = await this.#apply(name, change, options);
    const placement = change.placement;
    if (placement === undefined || this.#placementOf === undefined) return reply;
    return this.#placementOf(name) === placement ? reply : { ...reply, moved: true };
  }

  #apply(
    name: string,
    change: ObjectChange,
    options: { fromPeer?: boolean; keep?: (written: Promise<void>) => void },
  ): Promise<ChangeReply> {
    checkObjectName(name);
    const { uid } = parseObjectName(name);
    if (change.offset + change.data.length > objectBytesMax) {
      throw new RangeError(`Cannot change object ${name}: it would exceed ${objectBytesMax} bytes`);
    }
    return this.#locks.run(name, async () => {
      await this.#ready;
      if (change.heal === true && change.replace !== true) {
        throw new TypeError(`Cannot change object ${name}: healing only replaces copies whole`);
      }
      if (change.heal !== true) {
        await this.fences.admit(uid, Math.max(change.epoch, change.fence ?? 0));
      }
      const stamps = await this.#journal.stampsOf(uid);
      const current = stamps.get(name) ?? unwritten;
      const stamp: Stamp = [change.epoch, change.version];
      const applies = change.replace === true
        ? compareStamps(stamp, current) > 0
        : change.version === current[1] + 1 && change.epoch >= current[0];
      if (!applies) return { applied: false, stamp: current };
      const truncate = change.truncate === true || change.replace === true;
      const { offset, data } = change;
      if (change.remove !== true && data.length >= this.#inPlaceBytes) {
        // Later changes placed in the same file share its sync.
        if (options.fromPeer === true && options.keep !== undefined) {
          const { written } = await this.#engine.startObjectWrite(name, offset, data, { truncate });
          options.keep(written);
          written.catch((error) => this.#lost(name, [change.epoch, change.version], error));
        } else {
          await this.#engine.writeObject(name, offset, data, {
            truncate,
            // This node's own copy (its writer's): only a fill goes around the cache.
            direct: options.fromPeer === true ? true : "extending",
          });
        }
        const record: JournalRecord = { kind: "placed", name, stamp };
        this.#journal.applied(record, stamps);
        this.#placed.add(record);
        return { applied: true, stamp };
      }
      await this.#placed.settle(name); // the journal keeps each object's changes in order
      if (change.remove === true) {
        await this.#journal.remove({ kind: "remove", name, stamp }, stamps);
      } else {
        await this.#engine.writeObject(name, offset, data, { truncate });
        this.#journal.record({ kind: "write", name, stamp, offset, data, truncate }, stamps);
      }
      return { applied: true, stamp };
    });
  }

  async read(
    name: string,
    offset: number,
    length: number,
    into?: Uint8Array,
  ): Promise<{ data: Uint8Array; stamp: Stamp }> {
    checkObjectName(name);
    const { uid } = parseObjectName(name);
    // No change of `name` runs or waits, and its stamps are loaded: the stamp now
    // and a read asked now go together without the lock. The engine's read sees
    // the changes asked before it and none after (NodeDisk), and a change sets
    // its stamp only once its write is done or under way (startObjectWrite: a
    // read asked after that waits for it), under the lock.
    const stamps = this.#recovered && !this.#locks.busy(name) && length >= 0
      ? this.#journal.loadedStampsOf(uid)
      : undefined;
    if (stamps !== undefined) {
      return await this.#readAt(name, stamps.get(name) ?? unwritten, offset, length, into);
    }
    await this.#ready;
    return await this.#locks.run(name, async () => {
      const stamp = (await this.#journal.stampsOf(uid)).get(name) ?? unwritten;
      if (length < 0) length = Math.max(0, (await this.#engine.objectSize(name)) - offset);
      return await this.#readAt(name, stamp, offset, length, into);
    });
  }

  /** `length` bytes of `name` at `offset`, into `into` when it is that long, with `stamp`. */
  async #readAt(
    name: string,
    stamp: Stamp,
    offset: number,
    length: number,
    into?: Uint8Array,
  ): Promise<{ data: Uint8Array; stamp: Stamp }> {
    if (length > objectBytesMax) {
      throw new RangeError(`Cannot read object ${name}: ${length} bytes exceed ${objectBytesMax}`);
    }
    const data = into?.length === length ? into : new Uint8Array(length);
    await this.#engine.readObject(name, { offset, length }, data);
    return { data, stamp };
  }

  async stamps(names: string[]): Promise<Stamp[]> {
    await this.#ready;
    return await Promise.all(names.map(async (name) => {
      checkObjectName(name);
      return (await this.#journal.stampsOf(parseObjectName(name).uid)).get(name) ?? unwritten;
    }));
  }

  /**
   * Makes every applied change durable (one journal sync) and tells the stamps
   * of `names` as they were before it: a change applied while the sync runs is
   * not covered by it (the journal syncs what was appended when it began), so
   * a stamp read after it could claim a version a crash takes back.
   */
  async flush(names: string[] = []): Promise<Stamp[]> {
    await this.#ready;
    const lostBefore = this.#placed.lostCopies;
    const stamps = await this.stamps(names);
    await Promise.all(
      this.#placed.names().map((name) => this.#locks.run(name, () => this.#placed.settle(name))),
    );
    await this.#journal.sync();
    if (this.#placed.lostCopies !== lostBefore) {
      // A copy given up meanwhile (#lost) must not be answered for at the stamp read before.
      const now = await this.stamps(names);
      const gone = names.find((_, i) => compareStamps(now[i], stamps[i]) < 0);
      if (gone !== undefined) throw new Error(`Cannot flush object ${gone}: a write of it failed`);
    }
    return stamps;
  }

  /**
   * Gives this node's copy of `name` up (healing hands it off to its replicas),
   * data and stamp together and only while its stamp is still `stamp`: a change
   * that arrived since the replicas were checked keeps the copy. Without its
   * stamp, a change from a writer that still counts this node a replica finds
   * it behind and replaces it whole, instead of being applied on top of data no
   * longer here. The stamp goes durably before the data. True when given up.
   */
  drop(name: string, stamp: Stamp): Promise<boolean> {
    checkObjectName(name);
    const { uid } = parseObjectName(name);
    return this.#locks.run(name, async () => {
      await this.#ready;
      const stamps = await this.#journal.stampsOf(uid);
      if (compareStamps(stamps.get(name) ?? unwritten, stamp) !== 0) return false;
      await this.#placed.settle(name);
      await this.#journal.remove({ kind: "drop", name }, stamps);
      return true;
    });
  }

  /** A write answered for failed: see PlacedChanges.lost. */
  #lost(name: string, stamp: Stamp, error: unknown): void {
    log.warn("a write of object {name} failed after it was answered; giving the copy up: {error}", {
      name,
      error: String(error),
    });
    this.#locks.run(name, async () => {
      await this.#placed.lost(name, stamp, await this.#journal.stampsOf(parseObjectName(name).uid));
    }).catch((failure) => log.error("cannot give object {name} up: {failure}", { name, failure }));
  }

  /** See ObjectLink.short: counted until healing takes them (takeShort()). */
  short(names: string[]): Promise<void> {
    names.forEach(checkObjectName);
    this.#short += names.length;
    return Promise.resolve();
  }

  /** How many objects writers said other replicas lack since the last call (healing's). */
  takeShort(): number {
    const short = this.#short;
    this.#short = 0;
    return short;
  }

  /** Every object this node stores. */
  list(): AsyncIterable<string> {
    return this.#engine.listObjects();
  }

  /** Waits for a checkpoint under way, then closes the journal. */
  async close(): Promise<void> {
    await this.#ready.catch(() => {});
    await this.#journal.settle();
    this.#store.closeJournals();
  }
}

function checkObjectName(name: string): void {
  if (!isObjectName(name)) throw new TypeError(`bad object name ${JSON.stringify(name)}`);
}
