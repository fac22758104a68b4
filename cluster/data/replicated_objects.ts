/**
 * Volume objects across the cluster, from the side of the node that writes or
 * reads them. Objects are mutable, so unlike blocks a copy cannot vouch for
 * itself: each change advances the object's version on every replica it reaches
 * (see object_service.ts), and the writer remembers which replicas hold the
 * latest version ("current"). A replica that missed a change (unreachable,
 * restarted) falls out of the current set and is brought back by a whole-object
 * replacement; a write succeeds once a write quorum of the replicas holds it, a
 * flush once a write quorum holds it durably. The quorum is a majority, lowered
 * to R - floor(R/2) by replicas gossip declares dead (R = 2: one copy while the
 * other replica is dead); _write_quorum.ts gives the rule and its residual risks.
 * A replica that comes back behind is brought up (replaced whole) before the
 * writer's next change or flush counts it.
 *
 * A node that did not write an object reads the copy with the highest version,
 * so it sees every change a writer had acknowledged at a quorum.
 */
import { KeyedMutex } from "../../core/_mutex.ts";
import { LeaseLostError } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import {
  type ChangeReply,
  compareStamps,
  isFenced,
  type ObjectChange,
  type ObjectLink,
  type Stamp,
} from "./object_service.ts";
import { writeQuorumOf } from "./_write_quorum.ts";

/** Not enough replicas of an object answered or took a change. */
export class ReplicaQuorumError extends Error {
  override name = "ReplicaQuorumError";
}

/** What the writer knows of an object it changed. */
interface Written {
  stamp: Stamp;
  /** Ids of the replicas that hold `stamp`. */
  current: Set<string>;
}

/** Options of {@linkcode ReplicatedObjects}. */
export interface ReplicatedObjectsOptions {
  /** This node's replica id: read from it first when it holds a copy. */
  selfId: string;
  /** The replicas of an object, in placement order. */
  replicasOf: (name: string) => ObjectLink[];
  /** The writer's lease epoch for a volume (fencing; 1 until leases exist). */
  epochOf: (uid: string) => number;
  /** True when gossip declares the member dead (lowers the write quorum); none by default. */
  isDead?: (id: string) => boolean;
}

/** Counters an operator sees in /metrics. */
export interface ObjectCounters {
  writes: number;
  laggards: number;
  repairs: number;
  staleReads: number;
}

/** Writes, reads and flushes objects on their replicas. */
export class ReplicatedObjects {
  readonly counters: ObjectCounters = { writes: 0, laggards: 0, repairs: 0, staleReads: 0 };
  #options: ReplicatedObjectsOptions;
  #written = new Map<string, Written>();
  #locks = new KeyedMutex();
  /** Replica id → the link and the objects changed there since the last flush. */
  #unflushed = new Map<string, { link: ObjectLink; names: Set<string> }>();
  #background = new Set<Promise<void>>();

  constructor(options: ReplicatedObjectsOptions) {
    this.#options = options;
  }

  /** Writes `data` at `offset` (with `truncate`, on an emptied object). */
  write(name: string, offset: number, data: Uint8Array, truncate = false): Promise<void> {
    return this.#locks.run(name, () => this.#change(name, { offset, data, truncate }));
  }

  /** Deletes an object everywhere it is stored. */
  delete(name: string): Promise<void> {
    return this.#locks.run(
      name,
      () => this.#change(name, { offset: 0, data: new Uint8Array(), remove: true }),
    );
  }

  /** Reads `into.length` bytes at `offset` from a replica holding the latest version. */
  async read(name: string, offset: number, into: Uint8Array): Promise<void> {
    const links = this.#ordered(this.#options.replicasOf(name));
    const written = this.#written.get(name);
    if (written !== undefined) {
      for (const link of links.filter((link) => written.current.has(link.id))) {
        try {
          const { data, stamp } = await link.read(name, offset, into.length);
          if (compareStamps(stamp, written.stamp) !== 0) {
            // It lost what it took (it restarted before a flush): it lags now.
            written.current.delete(link.id);
            continue;
          }
          into.set(data);
          return;
        } catch {
          // try the next current replica
        }
      }
    }
    // Not the writer (or its replicas failed): ask every replica's stamp, and
    // read the copy that has the highest.
    const [first, ...others] = links;
    const reading = first.read(name, offset, into.length).catch(() => null);
    const stamps = await Promise.allSettled(others.map((link) => link.stamps([name])));
    const read = await reading;
    let best: { link: ObjectLink; stamp: Stamp } | null = read === null
      ? null
      : { link: first, stamp: read.stamp };
    stamps.forEach((result, i) => {
      if (result.status !== "fulfilled") return;
      const stamp = result.value[0];
      if (best === null || compareStamps(stamp, best.stamp) > 0) best = { link: others[i], stamp };
    });
    // Only answers from R - floor(R/2) replicas are sure to include one that took
    // every acknowledged change (a write quorum is at least a majority of R): a
    // replica that missed changes (it was down, or placement moved back to it)
    // answering alone would be taken for the latest.
    const answers = (read === null ? 0 : 1) +
      stamps.filter((result) => result.status === "fulfilled").length;
    const needed = links.length - Math.floor(links.length / 2);
    if (best === null || answers < needed) {
      throw new ReplicaQuorumError(
        `Cannot read object ${name}: ${answers} of ${links.length} replicas answered, ` +
          `${needed} needed`,
      );
    }
    const chosen = best as { link: ObjectLink; stamp: Stamp };
    if (read !== null && chosen.link === first) return into.set(read.data);
    if (read !== null) this.counters.staleReads++;
    const { data } = await chosen.link.read(name, offset, into.length);
    into.set(data);
  }

  /**
   * Makes every change that resolved before this call durable on a write quorum
   * of its object's replicas (bringing lagging replicas up first when the
   * others fall short, e.g. one came back from the dead since the write); then
   * brings the remaining laggards up, in the background.
   */
  async flush(): Promise<void> {
    const pending = [...this.#unflushed.values()];
    this.#unflushed.clear();
    // What each object must be at, as of this call (later writes may move the stamps on).
    const expected = new Map<string, Stamp>();
    for (const { names } of pending) {
      for (const name of names) {
        const stamp = this.#written.get(name)?.stamp;
        if (stamp !== undefined) expected.set(name, stamp);
      }
    }
    const flushed = await Promise.allSettled(
      pending.map(({ link, names }) => link.flush([...names])),
    );
    const durable = new Map<string, number>();
    pending.forEach(({ link, names }, i) => {
      const result = flushed[i];
      [...names].forEach((name, j) => {
        // Durable here only at the stamp this node wrote: a replica that restarted and
        // lost changes it took holds less (or nothing), and is no longer current (it is
        // brought up whole below, from a replica that holds the stamp, or the flush fails).
        const want = expected.get(name);
        const holds = result.status === "fulfilled" &&
          (want === undefined || compareStamps(result.value[j], want) >= 0);
        if (holds) durable.set(name, (durable.get(name) ?? 0) + 1);
        else this.#written.get(name)?.current.delete(link.id);
      });
    });
    const names = new Set(pending.flatMap(({ names }) => [...names]));
    for (const name of names) {
      const links = this.#options.replicasOf(name);
      const quorum = this.#quorumOf(links);
      let copies = durable.get(name) ?? 0;
      if (copies < quorum) {
        // Laggards are not among the replicas just flushed: each one brought up counts.
        copies += await this.#locks.run(name, async () => {
          const written = this.#written.get(name);
          return written === undefined ? 0 : (await this.#bringUp(name, written, links, true));
        });
      }
      if (copies < quorum) {
        throw new ReplicaQuorumError(
          `Cannot flush object ${name}: durable on ${copies} replicas, ${quorum} needed`,
        );
      }
    }
    for (const name of names) {
      const written = this.#written.get(name);
      const links = this.#options.replicasOf(name);
      if (written === undefined || links.every((link) => written.current.has(link.id))) continue;
      const task = this.#locks.run(name, () => this.#bringUp(name, written, links, true))
        .then(() => {}, () => {});
      this.#background.add(task);
      task.finally(() => this.#background.delete(task));
    }
  }

  /** Forgets what this node knew of a volume's objects (another node now writes it). */
  forget(uid: string): void {
    for (const name of [...this.#written.keys()]) {
      if (parseObjectName(name).uid === uid) this.#written.delete(name);
    }
  }

  /** Waits for background repairs. */
  async settle(): Promise<void> {
    await Promise.all([...this.#background]);
  }

  async #change(
    name: string,
    body: Pick<ObjectChange, "offset" | "data" | "truncate" | "remove">,
  ): Promise<void> {
    const epoch = this.#options.epochOf(parseObjectName(name).uid);
    if (epoch === 0) {
      throw new LeaseLostError(
        `Cannot write object ${name}: this node holds no lease on its volume`,
      );
    }
    const links = this.#options.replicasOf(name);
    const quorum = this.#quorumOf(links);
    const written = await this.#stateOf(name, links, quorum);
    // Fewer current replicas than the quorum (one came back from the dead, or
    // missed changes): bring them up first, or fail before sending a change.
    const currentCount = () => links.filter((link) => written.current.has(link.id)).length;
    if (currentCount() < quorum) await this.#bringUp(name, written, links, false);
    if (currentCount() < quorum) {
      this.#written.delete(name); // learn the replicas' state again on the next write
      throw new ReplicaQuorumError(
        `Cannot write object ${name}: ${currentCount()} of ${links.length} replicas ` +
          `are current, ${quorum} needed`,
      );
    }
    const change: ObjectChange = {
      ...body,
      epoch,
      version: written.stamp[1] + 1,
    };
    const targets = links.filter((link) => written.current.has(link.id));
    const self = targets.find((link) => link.id === this.#options.selfId);
    const remotes = targets.filter((link) => link !== self);
    const replies = await Promise.allSettled(remotes.map((link) => link.change(name, change)));
    const current = new Set<string>();
    let fenced: Error | null = null;
    replies.forEach((reply, i) => {
      if (reply.status === "fulfilled" && reply.value.applied) {
        current.add(remotes[i].id);
        this.#noteUnflushed(remotes[i], name);
      } else if (reply.status === "rejected" && isFenced(reply.reason)) {
        fenced = new LeaseLostError(String(reply.reason.message), { cause: reply.reason });
      }
    });
    // This node's own copy changes only once the others make a quorum with it, so
    // a holder cut off from the cluster cannot change even its own copy (unless
    // it sees the other replicas dead and the quorum is its copy alone).
    if (fenced === null && self !== undefined && current.size + 1 >= quorum) {
      const reply = await self.change(name, change);
      if (reply.applied) {
        current.add(self.id);
        this.#noteUnflushed(self, name);
      }
    }
    this.counters.writes++;
    this.counters.laggards += targets.length - current.size;
    written.stamp = [change.epoch, change.version];
    written.current = current;
    if (fenced !== null) {
      this.#written.delete(name);
      throw fenced;
    }
    if (current.size < quorum) await this.#bringUp(name, written, links, false);
    if (written.current.size < quorum) {
      this.#written.delete(name); // learn the replicas' state again on the next write
      throw new ReplicaQuorumError(
        `Cannot write object ${name}: ${written.current.size} of ${links.length} replicas ` +
          `took it, ${quorum} needed`,
      );
    }
  }

  /** The writer's state of `name`, learnt from a quorum of the replicas on first use. */
  async #stateOf(name: string, links: ObjectLink[], quorum: number): Promise<Written> {
    let written = this.#written.get(name);
    if (written !== undefined) return written;
    const answers = await Promise.allSettled(links.map((link) => link.stamps([name])));
    let stamp: Stamp = [0, 0];
    for (const answer of answers) {
      if (answer.status === "fulfilled" && compareStamps(answer.value[0], stamp) > 0) {
        stamp = answer.value[0];
      }
    }
    const answered = answers.filter((answer) => answer.status === "fulfilled").length;
    if (answered < quorum) {
      throw new ReplicaQuorumError(
        `Cannot change object ${name}: ${answered} of ${links.length} replicas answered`,
      );
    }
    const current = new Set<string>();
    answers.forEach((answer, i) => {
      if (answer.status === "fulfilled" && compareStamps(answer.value[0], stamp) === 0) {
        current.add(links[i].id);
      }
    });
    written = { stamp, current };
    this.#written.set(name, written);
    return written;
  }

  /**
   * Copies the latest version whole to replicas that lag behind it; with `flush`,
   * also makes the copies durable. Unreachable replicas stay behind. Returns how
   * many replicas it brought up.
   */
  async #bringUp(
    name: string,
    written: Written,
    links: ObjectLink[],
    flush: boolean,
  ): Promise<number> {
    const sources = this.#ordered(links).filter((link) => written.current.has(link.id));
    const laggards = links.filter((link) => !written.current.has(link.id));
    if (sources.length === 0 || laggards.length === 0) return 0;
    let whole: Uint8Array | null = null;
    for (const source of sources) {
      try {
        whole = (await source.read(name, 0, -1)).data;
        break;
      } catch {
        // try the next source
      }
    }
    if (whole === null) return 0;
    const change: ObjectChange = {
      epoch: written.stamp[0],
      version: written.stamp[1],
      replace: true,
      offset: 0,
      data: whole,
      remove: whole.length === 0,
    };
    let broughtUp = 0;
    await Promise.all(laggards.map(async (link) => {
      let reply: ChangeReply;
      try {
        reply = await link.change(name, change);
        if (flush) await link.flush([]);
      } catch (error) {
        if (isFenced(error)) throw error;
        return;
      }
      if (reply.applied || compareStamps(reply.stamp, written.stamp) === 0) {
        written.current.add(link.id);
        broughtUp++;
        this.counters.repairs++;
        if (!flush) this.#noteUnflushed(link, name);
      }
    }));
    return broughtUp;
  }

  /** The replicas a change or flush of an object must reach (_write_quorum.ts). */
  #quorumOf(links: ObjectLink[]): number {
    return writeQuorumOf(links.map((link) => link.id), this.#options.isDead ?? (() => false));
  }

  #noteUnflushed(link: ObjectLink, name: string): void {
    let entry = this.#unflushed.get(link.id);
    if (entry === undefined) this.#unflushed.set(link.id, entry = { link, names: new Set() });
    entry.names.add(name);
  }

  /** `links` with this node's replica first. */
  #ordered(links: ObjectLink[]): ObjectLink[] {
    const self = links.filter((link) => link.id === this.#options.selfId);
    return self.concat(links.filter((link) => link.id !== this.#options.selfId));
  }
}
