/**
 * Bringing an object's replicas to its newest copy for a writer that does not
 * know where it stands (after a failed change, or first under a lease), and to
 * the version a lease holder's first read takes: the writing half of
 * _replica_copies.ts.
 */
import { isFenced } from "./fences.ts";
import {
  type ChangeReply,
  compareStamps,
  type ObjectChange,
  type ObjectLink,
  type Stamp,
} from "./object_link.ts";
import {
  type Lookup,
  newestOf,
  type NewestRead,
  ReplicaQuorumError,
  type Written,
} from "./_replica_copies.ts";
import { checkAwayUnlessLost, checkFloor, checkGone } from "./_copy_checks.ts";
import { mustHearEveryone, stampsElsewhere } from "./_copies_elsewhere.ts";
import { maxStamp } from "./object_floors.ts";

/**
 * Reads `name` whole from the first of `sources` that still holds it at `held`
 * and writes it to `targets` under `stamp` (applied where older), admitted by
 * the writer's lease epoch `fence`; with `flush`, durably.
 * Returns the targets that hold it at `stamp` after. A fenced target ends it
 * (FencedError: the writer lost its lease).
 */
export async function copyWhole(
  name: string,
  sources: ObjectLink[],
  held: Stamp,
  targets: ObjectLink[],
  stamp: Stamp,
  fence: number,
  flush: boolean,
): Promise<ObjectLink[]> {
  let whole: Uint8Array | null = null;
  for (const source of sources) {
    try {
      const copy = await source.read(name, 0, -1);
      // A source that lost its copy since it was asked would spread what it has now.
      if (compareStamps(copy.stamp, held) !== 0) continue;
      whole = copy.data;
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
  /** A map names the object: it was written before. */
  existing = false,
): Promise<ObjectLink[] | "lost"> {
  // Asked whatever the replicas answer: even replicas that agree may all hold
  // less than a flush made durable (_replica_copies.ts, readNewest).
  const floor = lookup.floorOf();
  floor.catch(() => {}); // awaited below unless too few replicas answer
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
  // A new object (nothing anywhere, nothing sent) has no copies for gone members to hold.
  const known = existing || compareStamps(newest, [0, 0]) > 0 ||
    compareStamps(written.stamp, [0, 0]) > 0;
  if (known) checkGone(name, links.length, await lookup.goneReplicas?.() ?? 0);
  const everyone = answers.length === links.length;
  const agree = everyone && answers.every(({ stamp }) => compareStamps(stamp, newest) === 0);
  // Replicas that disagree, hold less than this writer acknowledged or than the
  // object's floor, or are asked for the first time under this lease (they may all
  // be new to the object since the placement changed): the newest copy may sit off
  // the placement (readNewest).
  const least = await floor;
  const lower = compareStamps(written.seen, written.acked) > 0 ? written.seen : written.acked;
  const below = compareStamps(newest, lower) < 0 || compareStamps(newest, least) < 0;
  // Replicas that agree on less than this writer sent (a change it sent that failed, after
  // the placement moved to members new to the object) say nothing of where its last copies
  // are: they may all be off the placement (seed 851096 with joins, leaves and
  // replacements: the new replicas agreed on "nothing", and a flush rewrote the object as
  // removed over the copies two members off the placement held).
  const behind = compareStamps(newest, written.stamp) < 0;
  const elsewhere = agree && !below && !behind && !fresh
    ? { found: [], away: [] }
    : await stampsElsewhere(
      name,
      links,
      lookup.everyone(),
      compareStamps(newest, lower) < 0 || mustHearEveryone(
        answers.map(({ stamp }) => stamp),
        links.length - Math.floor(links.length / 2),
        existing || compareStamps(written.acked, [0, 0]) > 0 ||
          compareStamps(written.stamp, [0, 0]) > 0,
      ),
      lookup,
    );
  const found = elsewhere.found;
  const best = newestOf([{ stamp: newest }, ...found])!.stamp;
  // Copies off this writer's placement were placed by another view of the members (a
  // join this node knows of and a reader may not yet): they stay behind, and what this
  // writer flushes next raises the object's floor so that such a reader, finding only
  // them, refuses them (seed 2204146 with joins and leaves: a member that had just joined
  // took a lease, wrote an object on itself and another new member, and a snapshot of it
  // was read half a second later by a node that knew neither, from the old copies).
  const offPlacement = newestOf(found)?.stamp;
  if (offPlacement !== undefined) {
    const behind = written.leftBehind;
    written.leftBehind = behind === null ? offPlacement : maxStamp(behind, offPlacement);
  }
  await checkAwayUnlessLost(name, best, written.seen, elsewhere.away, lookup);
  // Given up (no member that may hold it was away): not waited for again (as reads do,
  // _object_reads.ts, seed 10050468).
  if (compareStamps(best, written.seen) < 0) written.seen = best;
  if (compareStamps(best, written.acked) < 0) {
    if (!everyone) {
      throw new ReplicaQuorumError(
        `Cannot ${flush ? "flush" : "change"} object ${name}: the replicas holding its ` +
          `latest writes do not answer`,
      );
    }
    return "lost";
  }
  checkFloor(name, best, least);
  // What a writer before this one left (found by the first learning under the lease, or
  // by a flush): its flush may have made it durable for good. Not a change of this
  // writer's own (its epoch): whether that was flushed is this writer's to know (acked,
  // floors), and a copy of it a flush found on too few replicas may still be lost, which
  // the next flush reports (seed 1703821 with joins, leaves and replacements: such a copy
  // was lost in a crash, and the writer waited for a member that had died before the
  // object existed; seed 2106469: the one replica a failed flush made such a copy durable
  // on died for good, and every flush and read after waited for it). Only for an object a
  // map names: the first change of one it does not (a truncating write of a zero entry,
  // a copy-up, a deletion) keeps nothing of the copies, which hold only writes no flush
  // covered (seed 7006044 with joins, leaves and replacements: a new holder's first write
  // of such an object took the unflushed copy a crashed holder left on one replica for
  // durable; that replica restarted without it, and every flush and read after waited
  // for a member that had died for good and had never held the object).
  const before = best[0] < fence;
  const kept = flush || (fresh && existing);
  const previous = { stamp: written.stamp, seen: written.seen, current: written.current };
  const taken = kept && before && compareStamps(best, written.seen) > 0;
  if (taken) written.seen = best;
  const holders = answers.filter(({ stamp }) => compareStamps(stamp, best) === 0)
    .map(({ link }) => link);
  const outside = found.filter(({ stamp }) => compareStamps(stamp, best) === 0)
    .map(({ link }) => link);
  written.stale = false;
  if (compareStamps(best, written.stamp) >= 0) {
    written.stamp = best;
    written.current = new Set(holders.map((link) => link.id));
    // Only members off the placement hold it: copy it to the replicas.
    if (holders.length === 0 && outside.length > 0) {
      return await copyWhole(name, outside, best, links, best, fence, flush);
    }
    // A predecessor's version taken now for one to wait for, held on fewer replicas than a
    // write quorum: copied to the others (durably) first, as a holder's first read does
    // (adopt, below); when that cannot reach a write quorum, this learning did not happen
    // (nothing served or built on that version) and the next one starts over. Seed 10256585
    // with joins, leaves and replacements: a holder's write reached one replica and failed;
    // the holder taking the lease over flushed that copy in its first learning (a replica
    // that was down held it back a call's timeout) and took it as it stood, and when that
    // replica died for good a moment later, every read and flush of the object waited for it.
    if (taken && holders.length < quorum) {
      const laggards = links.filter((link) => !written.current.has(link.id));
      const copied = await copyWhole(name, holders, best, laggards, best, fence, true);
      if (holders.length + copied.length >= quorum) return copied;
      Object.assign(written, { ...previous, stale: true });
      throw new ReplicaQuorumError(
        `Cannot take object ${name} as it stands: version ${best} is on ${holders.length} of ` +
          `its ${links.length} replicas, and copying it to a write quorum failed`,
      );
    }
    return [];
  }
  // A change past `best` went out and may sit on a copy that did not answer.
  written.stamp = [Math.max(written.stamp[0], fence), written.stamp[1] + 1];
  written.current = new Set();
  return await copyWhole(
    name,
    [...holders, ...outside],
    best,
    links,
    written.stamp,
    fence,
    flush,
  );
}

/**
 * Makes the copies of the version a lease holder's look took durable (its
 * replicas' and the one it was read from) before the holder serves it and
 * waits for it: the version a predecessor left may be unflushed, and a holder
 * takes it as it stands, as a writer's first learning does
 * (_written_objects.ts). Seed 10104780 with joins, leaves and replacements
 * (a writer's learning): a new holder took its predecessor's unflushed change
 * for a version to wait for; its copy was lost in a leave, no read or write
 * came before a member that had never held it died for good, and every read
 * then waited for that member until it had been gone ten grace periods.
 */
export async function adopt(
  name: string,
  newest: NewestRead,
  links: ObjectLink[],
  quorum: number,
  fence: number,
): Promise<void> {
  const from = newest.from;
  const others = links.filter((link) => link.id !== from.id);
  const [kept, flushed] = await Promise.all([
    from.flush([name]).catch(() => null),
    Promise.allSettled(others.map((link) => link.flush([name]))),
  ]);
  if (kept === null || compareStamps(kept[0], newest.stamp) < 0) {
    throw new ReplicaQuorumError(
      `Cannot read object ${name}: the copy of version ${newest.stamp} on ${from.id} could ` +
        `not be made durable`,
    );
  }
  // Held on fewer replicas than a write quorum, the version is copied to the others
  // (durably) before it is waited for: seed 10162295 with joins, leaves and replacements
  // (a failed write's change sat on one replica; the new holder's first read took it,
  // its replica died for good a moment later, and every read waited for that member).
  const laggards = others.filter((_, i) => {
    const answer = flushed[i];
    return answer.status === "rejected" || compareStamps(answer.value[0], newest.stamp) < 0;
  });
  const holding = links.length - laggards.length;
  if (holding >= quorum || laggards.length === 0) return;
  const copied = await copyWhole(name, [from], newest.stamp, laggards, newest.stamp, fence, true);
  // Not on a write quorum: not served, not waited for; the next read looks again (as a
  // writer's learning, seed 10256585). Served, it could have been taken back once its
  // copies went (the next look, without them, finds the version before).
  if (holding + copied.length < quorum) {
    throw new ReplicaQuorumError(
      `Cannot read object ${name}: version ${newest.stamp} is on ${holding} of its ` +
        `${links.length} replicas, and copying it to a write quorum failed`,
    );
  }
}
