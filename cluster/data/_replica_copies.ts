/**
 * Reading and copying an object across its replicas without knowing which hold
 * the latest version: the parts of replicated_objects.ts that need no writer
 * state.
 */
import { isFenced } from "./fences.ts";
import {
  type ChangeReply,
  compareStamps,
  type ObjectChange,
  type ObjectLink,
  type Stamp,
} from "./object_link.ts";

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
  /** The replica it was read from. */
  from: ObjectLink;
  /** Every replica answered. */
  everyone: boolean;
  /** The first replica answered with an older copy than another's. */
  staleFirst: boolean;
}

/** Where to look beyond an object's replicas, and what bounds its copies from below. */
export interface Lookup {
  /** Every live member's link (copies off the current placement: it changed, healing lags). */
  everyone: () => ObjectLink[];
  /** The object's floor (object_floors.ts), asked only when its replicas disagree. */
  floorOf: () => Promise<Stamp>;
}

/**
 * Reads `into.length` bytes at `offset` from the replica with the highest
 * stamp (the first of `links` is read at once, the others asked their stamps).
 * Only answers from R - floor(R/2) replicas are sure to include one that took
 * every acknowledged change (a write quorum is at least a majority of R): a
 * replica that missed changes (it was down, or placement moved back to it)
 * answering alone would be taken for the latest, so fewer fail. When the
 * replicas do not all answer the same stamp, the copy may have moved (the
 * placement changed and healing has not caught up) or been flushed on fewer
 * copies than a read sees: the other live members are asked too, and the
 * newest copy found must reach the object's floor.
 */
export async function readNewest(
  name: string,
  links: ObjectLink[],
  offset: number,
  into: Uint8Array,
  lookup: Lookup,
  /** `atLeast`: what the writer acknowledged; `existing`: a map names the object. */
  expect: { atLeast?: Stamp; existing?: boolean } = {},
): Promise<NewestRead> {
  const atLeast = expect.atLeast ?? [0, 0];
  const [first, ...others] = links;
  const reading = first.read(name, offset, into.length).catch(() => null);
  const asked = await Promise.allSettled(others.map((link) => link.stamps([name])));
  const read = await reading;
  const answers: { link: ObjectLink; stamp: Stamp }[] = read === null
    ? []
    : [{ link: first, stamp: read.stamp }];
  asked.forEach((result, i) => {
    if (result.status === "fulfilled") answers.push({ link: others[i], stamp: result.value[0] });
  });
  const needed = links.length - Math.floor(links.length / 2);
  if (answers.length < needed) {
    throw new ReplicaQuorumError(
      `Cannot read object ${name}: ${answers.length} of ${links.length} replicas answered, ` +
        `${needed} needed`,
    );
  }
  let best = newestOf(answers)!;
  const everyone = answers.length === links.length;
  const agree = everyone && answers.every(({ stamp }) => compareStamps(stamp, best.stamp) === 0);
  // An object a map names that its replicas all lack lives elsewhere.
  const absent = expect.existing === true && compareStamps(best.stamp, [0, 0]) === 0;
  if (!agree || absent || compareStamps(best.stamp, atLeast) < 0) {
    best = newestOf([best, ...await stampsElsewhere(name, links, lookup.everyone())])!;
    await checkFloor(name, best.stamp, lookup.floorOf);
    if (absent && compareStamps(best.stamp, [0, 0]) === 0) {
      throw new ReplicaQuorumError(
        `Cannot read object ${name}: no member that answers holds a copy of it`,
      );
    }
  }
  if (read !== null && best.link === first) {
    into.set(read.data);
    return { stamp: best.stamp, from: first, everyone, staleFirst: false };
  }
  const { data } = await best.link.read(name, offset, into.length);
  into.set(data);
  return { stamp: best.stamp, from: best.link, everyone, staleFirst: read !== null };
}

/** The answer with the highest stamp (the first among equals), or null. */
function newestOf<T extends { stamp: Stamp }>(answers: T[]): T | null {
  let best: T | null = null;
  for (const answer of answers) {
    if (best === null || compareStamps(answer.stamp, best.stamp) > 0) best = answer;
  }
  return best;
}

/** The copies of `name` that live members other than `links` hold (written ones only). */
async function stampsElsewhere(
  name: string,
  links: ObjectLink[],
  everyone: ObjectLink[],
): Promise<{ link: ObjectLink; stamp: Stamp }[]> {
  const asked = new Set(links.map((link) => link.id));
  const elsewhere = everyone.filter((link) => !asked.has(link.id));
  const answers = await Promise.allSettled(elsewhere.map((link) => link.stamps([name])));
  const found: { link: ObjectLink; stamp: Stamp }[] = [];
  answers.forEach((answer, i) => {
    if (answer.status === "fulfilled" && compareStamps(answer.value[0], [0, 0]) > 0) {
      found.push({ link: elsewhere[i], stamp: answer.value[0] });
    }
  });
  return found;
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
  lookup: Lookup,
  /** This writer never learnt the object before (its first change under this lease). */
  fresh = false,
): Promise<ObjectLink[] | "lost"> {
  const replies = await Promise.allSettled(
    links.map((link) => flush ? link.flush([name]) : link.stamps([name])),
  );
  const answers: { link: ObjectLink; stamp: Stamp }[] = [];
  replies.forEach((reply, i) => {
    if (reply.status === "fulfilled") answers.push({ link: links[i], stamp: reply.value[0] });
  });
  if (answers.length < quorum) {
    throw new ReplicaQuorumError(
      `Cannot ${flush ? "flush" : "change"} object ${name}: ${answers.length} of ` +
        `${links.length} replicas answered, ${quorum} needed`,
    );
  }
  const newest = newestOf(answers)!.stamp;
  const everyone = answers.length === links.length;
  const agree = everyone && answers.every(({ stamp }) => compareStamps(stamp, newest) === 0);
  // Replicas that disagree, hold less than this writer acknowledged, or are asked
  // for the first time under this lease (they may all be new to the object since
  // the placement changed): the newest copy may sit off the placement (readNewest).
  const below = compareStamps(newest, written.acked) < 0;
  const elsewhere = agree && !below && !fresh
    ? []
    : await stampsElsewhere(name, links, lookup.everyone());
  const best = newestOf([{ stamp: newest }, ...elsewhere])!.stamp;
  if (compareStamps(best, written.acked) < 0) {
    if (!everyone) {
      throw new ReplicaQuorumError(
        `Cannot ${flush ? "flush" : "change"} object ${name}: the replicas holding its ` +
          `latest writes do not answer`,
      );
    }
    return "lost";
  }
  if (!agree) await checkFloor(name, best, lookup.floorOf);
  const holders = answers.filter(({ stamp }) => compareStamps(stamp, best) === 0)
    .map(({ link }) => link);
  const outside = elsewhere.filter(({ stamp }) => compareStamps(stamp, best) === 0)
    .map(({ link }) => link);
  written.stale = false;
  if (compareStamps(best, written.stamp) >= 0) {
    written.stamp = best;
    written.current = new Set(holders.map((link) => link.id));
    // Only members off the placement hold it: copy it to the replicas.
    if (holders.length > 0 || outside.length === 0) return [];
    return await copyWhole(name, outside, links, best, fence, flush);
  }
  // A change past `best` went out and may sit on a copy that did not answer.
  written.stamp = [Math.max(written.stamp[0], fence), written.stamp[1] + 1];
  written.current = new Set();
  return await copyWhole(name, [...holders, ...outside], links, written.stamp, fence, flush);
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
