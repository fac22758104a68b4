/**
 * Reading and copying an object across its replicas without knowing which hold
 * the latest version: the parts of replicated_objects.ts that need no writer
 * state.
 */
import {
  type ChangeReply,
  compareStamps,
  isFenced,
  type ObjectChange,
  type ObjectLink,
  type Stamp,
} from "./object_service.ts";

/** What the writer knows of an object it changed. */
export interface Written {
  /** The stamp of the last change sent. */
  stamp: Stamp;
  /**
   * The stamp of the last change acknowledged (at most `stamp`): what reads and
   * flushes must find on some replica, or those writes were lost.
   */
  acked: Stamp;
  /** Ids of the replicas that hold `stamp`. */
  current: Set<string>;
  /** A change failed: learn from the replicas where the object stands before the next one. */
  stale: boolean;
}

/** Not enough replicas of an object answered or took a change. */
export class ReplicaQuorumError extends Error {
  override name = "ReplicaQuorumError";
}

/** What {@linkcode readNewest} read. */
export interface NewestRead {
  /** The stamp of the copy read. */
  stamp: Stamp;
  /** Every replica answered. */
  everyone: boolean;
  /** The first replica answered with an older copy than another's. */
  staleFirst: boolean;
}

/**
 * Reads `into.length` bytes at `offset` from the replica with the highest
 * stamp (the first of `links` is read at once, the others asked their stamps).
 * Only answers from R - floor(R/2) replicas are sure to include one that took
 * every acknowledged change (a write quorum is at least a majority of R): a
 * replica that missed changes (it was down, or placement moved back to it)
 * answering alone would be taken for the latest, so fewer fail.
 */
export async function readNewest(
  name: string,
  links: ObjectLink[],
  offset: number,
  into: Uint8Array,
  floorOf: () => Promise<Stamp>,
): Promise<NewestRead> {
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
  const everyone = answers === links.length;
  if (!everyone) await checkFloor(name, chosen.stamp, floorOf);
  if (read !== null && chosen.link === first) {
    into.set(read.data);
    return { stamp: chosen.stamp, everyone, staleFirst: false };
  }
  const { data } = await chosen.link.read(name, offset, into.length);
  into.set(data);
  return { stamp: chosen.stamp, everyone, staleFirst: read !== null };
}

/**
 * Reads `name` whole from the first of `sources` that answers and writes it to
 * `targets` under `stamp` (applied where older), admitted by the writer's lease
 * epoch `fence`; with `flush`, durably.
 * Returns the targets that hold it at `stamp` after. A fenced target ends it
 * (FencedError: the writer lost its lease).
 */
export async function copyWhole(
  name: string,
  sources: ObjectLink[],
  targets: ObjectLink[],
  stamp: Stamp,
  fence: number,
  flush: boolean,
): Promise<ObjectLink[]> {
  let whole: Uint8Array | null = null;
  for (const source of sources) {
    try {
      whole = (await source.read(name, 0, -1)).data;
      break;
    } catch {
      // try the next source
    }
  }
  if (whole === null) return [];
  const change: ObjectChange = {
    epoch: stamp[0],
    version: stamp[1],
    replace: true,
    offset: 0,
    data: whole,
    remove: whole.length === 0,
    fence,
  };
  const copied: ObjectLink[] = [];
  await Promise.all(targets.map(async (link) => {
    let reply: ChangeReply;
    try {
      reply = await link.change(name, change);
      if (flush) await link.flush([]);
    } catch (error) {
      if (isFenced(error)) throw error;
      return;
    }
    if (reply.applied || compareStamps(reply.stamp, stamp) === 0) copied.push(link);
  }));
  return copied;
}

/**
 * Asks every replica where `name` stands (with `flush`, flushing it first) and
 * makes those holding the newest copy the current ones. When a change this
 * node sent is newer than every answer, replicas that did not answer may hold
 * it: the newest copy is then rewritten whole under a version past every one
 * sent, so that such a replica can never pass for current with different
 * bytes under the same stamp. "lost" when every replica
 * answered and none holds what this node acknowledged, ReplicaQuorumError
 * when too few answer.
 */
export async function learnWhereItStands(
  name: string,
  written: Written,
  links: ObjectLink[],
  quorum: number,
  flush: boolean,
  fence: number,
  floorOf: () => Promise<Stamp>,
): Promise<ObjectLink[] | "lost"> {
  const answers = await Promise.allSettled(
    links.map((link) => flush ? link.flush([name]) : link.stamps([name])),
  );
  const stamps = answers.map((answer) => answer.status === "fulfilled" ? answer.value[0] : null);
  const answered = stamps.filter((stamp) => stamp !== null).length;
  if (answered < quorum) {
    throw new ReplicaQuorumError(
      `Cannot ${flush ? "flush" : "change"} object ${name}: ${answered} of ${links.length} ` +
        `replicas answered, ${quorum} needed`,
    );
  }
  const best = stamps.reduce<Stamp>(
    (best, stamp) => stamp !== null && compareStamps(stamp, best) > 0 ? stamp : best,
    [0, 0],
  );
  if (compareStamps(best, written.acked) < 0) {
    if (answered < links.length) {
      throw new ReplicaQuorumError(
        `Cannot ${flush ? "flush" : "change"} object ${name}: the replicas holding its ` +
          `latest writes do not answer`,
      );
    }
    return "lost";
  }
  if (answered < links.length) await checkFloor(name, best, floorOf);
  const holders = links.filter((_, i) =>
    stamps[i] !== null && compareStamps(stamps[i]!, best) === 0
  );
  if (compareStamps(best, written.stamp) >= 0 || answered === links.length) {
    written.stamp = best;
    written.current = new Set(holders.map((link) => link.id));
    written.stale = false;
    return [];
  }
  // A change past `best` went out and may sit on a replica that did not answer.
  written.stamp = [Math.max(written.stamp[0], fence), written.stamp[1] + 1];
  written.current = new Set();
  const copied = await copyWhole(name, holders, links, written.stamp, fence, flush);
  written.stale = false;
  return copied;
}

/**
 * Refuses `newest` when it is below the object's floor (object_floors.ts):
 * the copies that answered missed a flush, and one that holds it is away.
 */
async function checkFloor(
  name: string,
  newest: Stamp,
  floorOf: () => Promise<Stamp>,
): Promise<void> {
  const floor = await floorOf();
  if (compareStamps(newest, floor) < 0) {
    throw new ReplicaQuorumError(
      `Cannot use object ${name}: the replicas that answer hold version ${newest}, below ` +
        `version ${floor} that a flush made durable on a replica that does not answer`,
    );
  }
}
