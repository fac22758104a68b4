/**
 * Listing the metadata keys of a kind (`volume/`, `image/`...), completely.
 *
 * A value is chosen once a quorum of the voters accepted it, so the keys a
 * quorum of voters holds include every key that has a value, whatever the
 * others say; fewer answers may miss some. Garbage collection marks what the
 * listed records reference and deletes the rest, so a listing that silently
 * missed a key (its voters did not answer in time) would delete the data of a
 * live volume: a listing without a quorum of answers fails instead.
 *
 * A node that is not a voter may know an older configuration than the voters
 * do (it learns a new one when a round is refused), and its old voters may no
 * longer hold the keys written since. Every answer says the configuration the
 * voter knows; a newer one is installed and the listing asked again of its
 * voters.
 */
import { NoQuorumError, NotJoinedError } from "./caspaxos.ts";
import { allVoters, isQuorum, type MetaConfig } from "./config.ts";

/** Listings asked again after learning a newer configuration, at most. */
const newerConfigRetriesMax = 4;

/** What one voter answers: the keys it holds a value for, and the configuration it knows. */
export interface VoterKeys {
  keys: string[];
  config: MetaConfig | null;
}

/** Options of {@linkcode listChosenKeys}. */
export interface KeyListingOptions {
  /** The node's configuration, and how to install a newer one. */
  configs: { current(): MetaConfig | null; install(config: MetaConfig): Promise<void> };
  /** Asks voter `id` (this node's own acceptor included); rejects when it does not answer. */
  ask: (id: string) => Promise<VoterKeys>;
  /** For messages: the prefix listed. */
  prefix: string;
}

/** What {@linkcode listChosenKeys} found. */
export interface ListedKeys {
  /** Every key some voter that answered holds, sorted. */
  keys: string[];
  /**
   * Those that some voters that answered do not hold: deleted since (a voter
   * missed the deletion) or a value its proposer left on too few acceptors,
   * which a later read may still choose (a read's full round settles it).
   */
  partial: Set<string>;
}

/**
 * The sorted union of the keys a quorum of the voters holds under the prefix
 * (with `everyVoter`, all of them); NoQuorumError when too few voters answer.
 * Keys deleted since may be among them (a voter that missed the deletion):
 * callers read each through a quorum.
 */
export async function listChosenKeys(
  options: KeyListingOptions & { everyVoter?: boolean },
): Promise<ListedKeys> {
  for (let attempt = 0;; attempt++) {
    const config = options.configs.current();
    if (config === null) {
      throw new NotJoinedError(
        `Cannot list ${options.prefix}: this node has not joined a cluster yet`,
      );
    }
    const voters = allVoters(config);
    const answers = await Promise.allSettled(voters.map((id) => options.ask(id)));
    const answered = new Set<string>();
    const holders = new Map<string, number>();
    let newest = config;
    for (let i = 0; i < voters.length; i++) {
      const answer = answers[i];
      if (answer.status === "rejected") continue;
      answered.add(voters[i]);
      for (const key of new Set(answer.value.keys)) holders.set(key, (holders.get(key) ?? 0) + 1);
      const known = answer.value.config;
      if (known !== null && known.epoch > newest.epoch) newest = known;
    }
    if (newest !== config && attempt < newerConfigRetriesMax) {
      await options.configs.install(newest);
      continue;
    }
    const enough = options.everyVoter === true
      ? answered.size === voters.length
      : isQuorum(config, answered);
    if (!enough) {
      throw new NoQuorumError(
        `Cannot list ${options.prefix}: ${answered.size} of the ${voters.length} metadata ` +
          `voters answered, too few to be sure no key is missing`,
      );
    }
    const keys = [...holders.keys()].sort();
    return { keys, partial: new Set(keys.filter((key) => holders.get(key)! < answered.size)) };
  }
}
