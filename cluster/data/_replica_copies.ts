/**
 * Reading an object across its replicas without knowing which hold the latest
 * version: the parts of replicated_objects.ts that need no writer state (the
 * writer's catching up is _replica_learning.ts).
 */
import { compareStamps, type ObjectLink, type Stamp } from "./object_link.ts";
import { checkAwayUnlessLost, checkFloor, checkGone, ReplicaQuorumError } from "./_copy_checks.ts";
import { mustHearEveryone, stampsElsewhere } from "./_copies_elsewhere.ts";

export { ReplicaQuorumError };

/** What the writer knows of an object it changed. */
export interface Written {
  /** The stamp of the last change sent. */
  stamp: Stamp;
  /**
   * The stamp of the last change acknowledged (at most `stamp`): what reads and
   * flushes must find on some replica, or those writes were lost.
   */
  acked: Stamp;
  /**
   * The newest stamp this writer found the replicas holding when it learnt where
   * the object stands (what it was handed, or what a flush found durable), or
   * that its own flush made durable on a write quorum; not its own changes
   * acknowledged and not flushed since (a loss of every copy of those is
   * WritesLostError): copies below it mean the members that hold it are away,
   * and nothing older is taken while a member gossip called gone lately is silent
   * (seed 1322459 with joins, leaves and replacements: a new holder learnt an
   * object at the version its predecessor flushed; that copy's members then left
   * or died, and a flush took the "nothing" the others answered and rewrote the
   * object as removed).
   */
  seen: Stamp;
  /** Ids of the replicas that hold `stamp`. */
  current: Set<string>;
  /** A change failed: learn from the replicas where the object stands before the next one. */
  stale: boolean;
  /**
   * The stamp of the last change sent to the placement only while a member off
   * it held the version before (the placement moved): that copy stays behind,
   * and a flush that makes this stamp durable raises the object's floor to it
   * (_object_flush.ts), or a reader finding only that copy would take it.
   */
  leftBehind: Stamp | null;
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

/** What a read knows of the object before it asks (see {@linkcode readNewest}). */
export interface Expectation {
  atLeast?: Stamp;
  durable?: Stamp;
  /**
   * A version this node read before that may not have been durable: waited for
   * only from members gone within one dead grace (the others, ten graces, wait
   * only for `durable`).
   */
  read?: Stamp;
  existing?: boolean;
  everywhere?: boolean;
  elsewhere?: boolean;
}

/** Where to look beyond an object's replicas, and what bounds its copies from below. */
export interface Lookup {
  /** Every live member's link (copies off the current placement: it changed, healing lags). */
  everyone: () => ObjectLink[];
  /**
   * Members gossip called dead or gone lately: asked too by a look that must hear
   * everyone, their silence not counted (stampsElsewhere).
   */
  seenGone?: () => ObjectLink[];
  /**
   * The ids of members gossip calls dead or gone for longer than strict looks ask
   * them, not declared lost: a version known durable is waited for from them too
   * (checkAwayUnlessLost); none when not given.
   */
  longGone?: () => string[];
  /** The ids of those gone within one dead grace (see Expectation.read); none when not given. */
  goneWithinGrace?: () => string[];
  /**
   * How many of the object's replicas, placed over the members including those gossip
   * calls gone and no operator declared lost, are gone (checkGone); none when not given.
   */
  goneReplicas?: () => Promise<number>;
  /**
   * True when an operator declared every one of `ids` lost (their copies given up):
   * a member gone lately that was is not waited for (checkAwayUnlessLost); never when not given.
   */
  allLost?: (ids: string[]) => Promise<boolean>;
  /** The object's floor (object_floors.ts): every copy taken for the newest must reach it. */
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
 * copies than a read sees: the other live members are asked too. Whatever
 * they answer, the newest copy found must reach the object's floor.
 */
export async function readNewest(
  name: string,
  links: ObjectLink[],
  offset: number,
  into: Uint8Array,
  lookup: Lookup,
  /**
   * `atLeast`: what the writer acknowledged; `durable`: a version known to have
   * been durable or handed over (checkAway); `existing`: a map names the object;
   * `everywhere`: the writer may have placed it where these replicas are not
   * (Engine.readObject's `orphaned`): every live member must answer;
   * `elsewhere`: the other live members are asked too, whatever the replicas
   * answer (those that do not answer are not waited for).
   */
  expect: Expectation = {},
): Promise<NewestRead> {
  for (let attempt = 1;; attempt++) {
    const read = await readNewestOnce(name, links, offset, into, lookup, expect);
    if (read !== null) return read;
    if (attempt === movedReadAttempts) {
      throw new ReplicaQuorumError(
        `Cannot read object ${name}: its newest copy moved away each of ${attempt} times it was read`,
      );
    }
  }
}

/**
 * How often a read starts over when the copy its stamps pointed to is gone by
 * the time it is read (healing handed it off, its member restarted).
 */
export const movedReadAttempts = 4;

/** One try of readNewest: null when the copy chosen no longer held its stamp when read. */
async function readNewestOnce(
  name: string,
  links: ObjectLink[],
  offset: number,
  into: Uint8Array,
  lookup: Lookup,
  expect: Expectation,
): Promise<NewestRead | null> {
  const atLeast = expect.atLeast ?? [0, 0];
  const durable = expect.durable ?? [0, 0];
  const [first, ...others] = links;
  // Asked whatever the replicas answer (seed 600710 with joins and leaves: the
  // one copy a flush made durable left with its member, and the two replicas
  // then agreed on an older copy healing had spread); usually remembered.
  const floor = lookup.floorOf();
  floor.catch(() => {}); // awaited below unless the read fails first
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
  checkGone(name, links.length, await lookup.goneReplicas?.() ?? 0);
  let best = newestOf(answers)!;
  const everyone = answers.length === links.length;
  const agree = everyone && answers.every(({ stamp }) => compareStamps(stamp, best.stamp) === 0);
  // An object a map names that its replicas all lack lives elsewhere.
  const absent = expect.existing === true && compareStamps(best.stamp, [0, 0]) === 0;
  const least = await floor;
  const everywhere = expect.everywhere === true;
  if (
    everywhere || expect.elsewhere === true || !agree || absent ||
    compareStamps(best.stamp, atLeast) < 0 || compareStamps(best.stamp, least) < 0 ||
    compareStamps(best.stamp, durable) < 0
  ) {
    // A replica that did not answer may be the one holding the newest copy while the
    // ones that did are new to the object, placed by a view of the members the writer
    // did not share (seed 801146 with joins, leaves and replacements: a snapshot read
    // took the stale copy a member kept from an earlier placement, the writer's other
    // replica being cut off from the reader): every live member must answer then.
    const strict = everywhere || answers.length < links.length ||
      compareStamps(best.stamp, atLeast) < 0 || compareStamps(best.stamp, durable) < 0 ||
      mustHearEveryone(
        answers.map(({ stamp }) => stamp),
        needed,
        expect.existing === true || compareStamps(atLeast, [0, 0]) > 0,
      );
    // A strict look also asks the replicas that answered again: it may come a call's timeout
    // after their first answers (a silent replica held the read up), and a copy handed off
    // meanwhile may have moved onto one of them from a member asked only now (seed 5500256
    // with joins and leaves: a new replica answered "nothing" before healing handed it the
    // newest copy and the reader, which held it, let its own go; a second later the strict
    // look found only a copy a member back from a leave had kept, and the read served it).
    const [elsewhere, again] = await Promise.all([
      stampsElsewhere(name, links, lookup.everyone(), strict, lookup),
      strict ? Promise.allSettled(answers.map(({ link }) => link.stamps([name]))) : [],
    ]);
    const fresh = again.flatMap((answer, i) =>
      answer.status === "fulfilled" ? [{ link: answers[i].link, stamp: answer.value[0] }] : []
    );
    best = newestOf([best, ...fresh, ...elsewhere.found])!;
    await checkAwayUnlessLost(name, best.stamp, durable, elsewhere.away, lookup);
    if (expect.read !== undefined) {
      const lately = new Set(lookup.goneWithinGrace?.() ?? []);
      const away = elsewhere.away.filter((id) => lately.has(id));
      await checkAwayUnlessLost(name, best.stamp, expect.read, away, { allLost: lookup.allLost });
    }
    if (absent && compareStamps(best.stamp, [0, 0]) === 0) {
      throw new ReplicaQuorumError(
        `Cannot read object ${name}: no member that answers holds a copy of it`,
      );
    }
  }
  checkFloor(name, best.stamp, least);
  // The bytes read first are the newest only at the stamp they came with (a strict look
  // may have found that replica further on since).
  if (read !== null && best.link === first && compareStamps(best.stamp, read.stamp) === 0) {
    into.set(read.data);
    return { stamp: best.stamp, from: first, everyone, staleFirst: false };
  }
  // Between its stamp and this read the copy may have gone (seed 40344 of the
  // data-path simulation at 63cc354: a replica handed the object off and the read
  // returned nothing, as zeros): only the stamp the read returns tells.
  const copy = await best.link.read(name, offset, into.length).catch(() => null);
  if (copy === null || compareStamps(copy.stamp, best.stamp) < 0) return null;
  into.set(copy.data);
  return { stamp: copy.stamp, from: best.link, everyone, staleFirst: read !== null };
}

/** The answer with the highest stamp (the first among equals), or null. */
export function newestOf<T extends { stamp: Stamp }>(answers: T[]): T | null {
  let best: T | null = null;
  for (const answer of answers) {
    if (best === null || compareStamps(answer.stamp, best.stamp) > 0) best = answer;
  }
  return best;
}
