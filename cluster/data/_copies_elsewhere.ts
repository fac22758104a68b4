/**
 * Looks for an object's copies off its placement (_replica_copies.ts,
 * _replica_learning.ts): when a look must hear every live member, and the
 * stamps members other than the replicas hold.
 */
import { compareStamps, type ObjectLink, type Stamp } from "./object_link.ts";
import { ReplicaQuorumError } from "./_copy_checks.ts";
import type { Lookup } from "./_replica_copies.ts";

/**
 * Whether a look off the placement must hear every live member: the object
 * exists (or some replica holds a copy), yet fewer replicas than a read needs
 * answered with a copy. Replicas new to the object (the placement changed)
 * answer "nothing", which counts for nothing; then the copies found elsewhere
 * may all predate a write that replicas of the earlier placement took, and a
 * member that did not answer may hold it. Seed 9021 of the data-path
 * simulation with joins: a snapshot read counted two members that had just
 * joined, both empty, as the replicas' answers, and took the stale copy of the
 * one old member that answered while those holding the newest did not. (A
 * replica that does not answer makes the look strict as well: readNewestOnce.)
 */
export function mustHearEveryone(answers: Stamp[], needed: number, exists: boolean): boolean {
  const copies = answers.filter((stamp) => compareStamps(stamp, [0, 0]) > 0).length;
  return (exists || copies > 0) && copies < needed;
}

/**
 * The copies of `name` that live members other than `links` hold (written ones
 * only); with `strict`, each of them must answer (mustHearEveryone), and the
 * members gossip called dead or gone lately (`lookup.seenGone`) are asked too, their
 * silence not counted: a view can be wrong the other way as well (seed 930578
 * with boot reads: a reader that still saw the lease holder and another member
 * dead after a cut healed read an object's stale copy on the live members, the
 * two it skipped holding its flushed writes; seed 851017 with joins, leaves and
 * replacements: a member back from a crash that the reader still saw dead).
 */
export async function stampsElsewhere(
  name: string,
  links: ObjectLink[],
  everyone: ObjectLink[],
  strict: boolean,
  lookup?: Pick<Lookup, "seenGone">,
): Promise<Elsewhere> {
  const asked = new Set(links.map((link) => link.id));
  const elsewhere = everyone.filter((link) => !asked.has(link.id));
  for (const link of elsewhere) asked.add(link.id);
  const unsure = strict ? (lookup?.seenGone?.() ?? []).filter((link) => !asked.has(link.id)) : [];
  const answers = await Promise.allSettled(
    [...elsewhere, ...unsure].map((link) => link.stamps([name])),
  );
  const found: { link: ObjectLink; stamp: Stamp }[] = [];
  const silent: string[] = [];
  const away: string[] = [];
  answers.forEach((answer, i) => {
    const link = i < elsewhere.length ? elsewhere[i] : unsure[i - elsewhere.length];
    if (answer.status === "rejected") {
      (i < elsewhere.length ? silent : away).push(link.id);
    } else if (compareStamps(answer.value[0], [0, 0]) > 0) {
      found.push({ link, stamp: answer.value[0] });
    }
  });
  if (strict && silent.length > 0) {
    throw new ReplicaQuorumError(
      `Cannot find where object ${name} stands: its replicas do not agree and members that ` +
        `may hold its newest copy do not answer (${silent.slice(0, 5).join(", ")})`,
    );
  }
  return { found, away };
}

/** What {@linkcode stampsElsewhere} found. */
export interface Elsewhere {
  /** The written copies members off the placement hold. */
  found: { link: ObjectLink; stamp: Stamp }[];
  /** Members gossip called gone lately that did not answer (asked by a strict look only). */
  away: string[];
}
