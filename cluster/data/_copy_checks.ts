/**
 * The checks that refuse a copy found for an object's newest (_replica_copies.ts,
 * _replica_learning.ts): below its floor, below what is known to exist while
 * members that may hold it are away, or with most of its replicas gone.
 */
import { UnavailableError } from "../../core/mod.ts";
import { compareStamps, type Stamp } from "./object_link.ts";

/**
 * Not enough replicas of an object answered or took a change: a state of the
 * cluster (HTTP 503, and a patient request waits), not a bug.
 */
export class ReplicaQuorumError extends UnavailableError {
  override name = "ReplicaQuorumError";
}

/**
 * Refuses `newest` when it is below the object's floor (object_floors.ts):
 * the copies that answered missed a flush, and one that holds it is away.
 */
export function checkFloor(name: string, newest: Stamp, floor: Stamp): void {
  if (compareStamps(newest, floor) < 0) {
    throw new ReplicaQuorumError(
      `Cannot use object ${name}: the replicas that answer hold version ${newest}, below ` +
        `version ${floor} that a flush made durable on a replica that does not answer`,
    );
  }
}

/**
 * Refuses to say where object `name` stands while a majority of its `replicas`
 * (placed over the members including those gossip called gone lately) are gone:
 * a flush leaves copies on at least a majority of R (fewer raise the object's
 * floor), so gone members may hold every copy of its last flushed version, and
 * the members that answer for them now hold older ones or none (seed 1327150
 * with joins, leaves and replacements: both replicas of a snapshot's object at
 * R=2 left, the placement moved on past the grace to a member holding an older
 * copy, and reads and a clone's copy-up took it). The object is unavailable
 * until they are back, or gone for longer than strict looks ask them.
 */
export function checkGone(name: string, replicas: number, gone: number): void {
  if (gone >= Math.floor(replicas / 2) + 1) {
    throw new ReplicaQuorumError(
      `Cannot find where object ${name} stands: ${gone} of its ${replicas} replicas left ` +
        `or died lately and may hold its only up-to-date copies`,
    );
  }
}

/**
 * Refuses `best` when it is below `atLeast`, a version the reader or writer
 * knows was durable or handed over, while a member gossip called gone lately did not answer: that
 * member may hold it (it left, or restarted, with the only copies), and an
 * older copy taken now would be served or written over it for good.
 */
export function checkAway(name: string, best: Stamp, atLeast: Stamp, away: string[]): void {
  if (away.length > 0 && compareStamps(best, atLeast) < 0) {
    throw new ReplicaQuorumError(
      `Cannot use object ${name}: the members that answer hold version ${best}, below ` +
        `version ${atLeast} known to exist, and members that may hold it are away ` +
        `(${away.slice(0, 5).join(", ")}; if one is gone for good, declare it lost: ` +
        `atoll cluster lost ID)`,
    );
  }
}

/**
 * {@linkcode checkAway}, counting as away the members gone for longer than strict
 * looks ask them too (`longGone`: they were not asked, and may hold it all the
 * same), once the members an operator declared lost are taken out of `away`
 * (their copies were given up: nothing is waited for from them), asked only when
 * it would refuse. Seed 5300544 with joins, leaves, replacements and a
 * declaration: a holder knew of a version that only a member since declared lost
 * had held, and waited for that member a second a try until every read through
 * it timed out; the declaration was made on another node, and this one had no
 * reason to ask before. `sim/long_gone_test.ts`: at R = 2 both replicas of a
 * flushed object stayed away for longer than ten grace periods while members
 * joined, and a writer whose change had failed took its flushed writes for lost.
 */
export async function checkAwayUnlessLost(
  name: string,
  best: Stamp,
  atLeast: Stamp,
  away: string[],
  gone: { allLost?: (ids: string[]) => Promise<boolean>; longGone?: () => string[] },
): Promise<void> {
  if (compareStamps(best, atLeast) >= 0) return;
  const all = [...new Set([...away, ...gone.longGone?.() ?? []])];
  if (all.length === 0) return;
  const lost = gone.allLost === undefined
    ? []
    : await Promise.all(all.map((id) => gone.allLost!([id])));
  checkAway(name, best, atLeast, all.filter((_, i) => lost[i] !== true));
}
