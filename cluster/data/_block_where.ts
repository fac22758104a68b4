/**
 * Where a block read looks past its replicas (block_service.ts): the members
 * that say they hold it, and where other members place it, the last look of a
 * read that found no copy on any member this node knows. A member that joined
 * lately may not be in this node's view yet while the writer, whose view had
 * it, placed the block there: every member then answers "not here", and the
 * read took the block for lost (seeds 10016950 and 10500920 of the data-path
 * simulation with joins: an image read and a collection's mark, right after a
 * join, failed with CorruptionError while the block sat on the new member).
 * The members asked say where their own view places it, and the ones this
 * node did not know are asked for it.
 */
import type { RpcCaller, RpcMethod } from "../transport/mod.ts";
import { isBlockName } from "../../core/mod.ts";

/** A member as a placement names it. */
export interface PlacedPeer {
  id: string;
  address: string;
}

/** The RPC method: `{ hash }` → `{ replicas: PlacedPeer[] }`, by the answering member's view. */
export const blockWhereMethod = "block.where";

/** Most replicas an answer may name (R is at most this). */
const namedMax = 16;
/** Longest member id or address taken from an answer. */
const nameBytesMax = 256;
/** Members asked at once. */
export const askedInFlightMax = 32;

/** The method, over this node's placement. */
export function blockWhere(replicasOf: (hash: string) => PlacedPeer[]): RpcMethod {
  return (request) => {
    const hash = String(request.header.hash);
    if (!isBlockName(hash)) throw new TypeError("bad block name");
    const replicas = replicasOf(hash).map(({ id, address }) => ({ id, address }));
    return { header: { replicas } };
  };
}

/**
 * The members `peers` place block `hash` on that are not in `asked`, each once.
 * A member that does not answer (or runs a version without the method) names none.
 */
export async function placedElsewhere(
  rpc: RpcCaller,
  hash: string,
  peers: PlacedPeer[],
  asked: ReadonlySet<string>,
): Promise<PlacedPeer[]> {
  const found = new Map<string, PlacedPeer>();
  for (let i = 0; i < peers.length; i += askedInFlightMax) {
    const answers = await Promise.allSettled(
      peers.slice(i, i + askedInFlightMax).map((peer) =>
        rpc.call(peer.address, blockWhereMethod, { header: { hash } })
      ),
    );
    for (const answer of answers) {
      if (answer.status === "rejected") continue;
      for (const peer of namedPeers(answer.value.header.replicas)) {
        if (!asked.has(peer.id) && !found.has(peer.id)) found.set(peer.id, peer);
      }
    }
  }
  return [...found.values()];
}

/** The well-formed members of an answer's `replicas`, at most {@linkcode namedMax}. */
function namedPeers(replicas: unknown): PlacedPeer[] {
  if (!Array.isArray(replicas)) return [];
  return replicas.slice(0, namedMax).flatMap((peer) => {
    const { id, address } = (peer ?? {}) as Record<string, unknown>;
    const fits = (value: unknown): value is string =>
      typeof value === "string" && value.length > 0 && value.length <= nameBytesMax;
    return fits(id) && fits(address) ? [{ id, address }] : [];
  });
}

/**
 * Those of `peers` that say they hold block `hash`, asked a batch at a time;
 * `tally.unreachable` counts those that do not answer.
 */
export async function holdersOf(
  rpc: RpcCaller,
  hash: string,
  peers: PlacedPeer[],
  tally: { unreachable: number },
): Promise<PlacedPeer[]> {
  const holders: PlacedPeer[] = [];
  for (let i = 0; i < peers.length; i += askedInFlightMax) {
    const batch = peers.slice(i, i + askedInFlightMax);
    const answers = await Promise.allSettled(
      batch.map((peer) => rpc.call(peer.address, "block.has", { header: { hashes: [hash] } })),
    );
    answers.forEach((answer, j) => {
      if (answer.status === "rejected") tally.unreachable++;
      else if ((answer.value.header.have as unknown[])?.[0] === true) holders.push(batch[j]);
    });
  }
  return holders;
}
