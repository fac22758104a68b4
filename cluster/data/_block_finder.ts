/**
 * Where a read of a block this node lacks finds a good copy: its replicas in
 * order, then any live member that says it holds one, then the members the
 * others place it on (one this node has not heard of yet: _block_where.ts).
 * Every copy is verified against its name; a peer that sends bad bytes, or a
 * replica that lacks the block, is noted as damaged (the reader repairs it).
 */
import type { RpcCaller } from "../transport/mod.ts";
import { holdersOf, placedElsewhere } from "./_block_where.ts";
import { sha256Hex } from "./block_rpc.ts";
import type { BlockPeer, ReplicaPicker } from "./block_service.ts";

/** What one fetch learned; `damaged`: replicas lacking the block, members sending bad bytes. */
export type FetchTally = { unreachable: number; damaged: BlockPeer[] };

/** What a finder asks of its block service. */
export interface BlockFinderOptions {
  selfId: string;
  rpc: RpcCaller;
  replicasOf: ReplicaPicker;
  /** Every live member. */
  allPeers: () => BlockPeer[];
  /** Counts a copy found on a member that is not one of the block's replicas. */
  foundElsewhere: () => void;
}

/** See the module doc. */
export class BlockFinder {
  #options: BlockFinderOptions;

  constructor(options: BlockFinderOptions) {
    this.#options = options;
  }

  /** The block from its replicas, else any live member, else where they place it; how many asked. */
  async find(
    hash: string,
    tally: FetchTally,
  ): Promise<{ data: Uint8Array | null; asked: number }> {
    const { selfId, rpc } = this.#options;
    const replicas = this.#options.replicasOf(hash).filter((peer) => peer.id !== selfId);
    let data = await this.first(hash, replicas, tally, { placed: true });
    const asked = new Set([selfId, ...replicas.map((peer) => peer.id)]);
    const others = data === null
      ? this.#options.allPeers().filter((peer) => !asked.has(peer.id))
      : [];
    if (data === null && others.length > 0) {
      const holders = await holdersOf(rpc, hash, others, tally);
      data = await this.first(hash, holders, tally, { placed: false });
      if (data !== null) this.#options.foundElsewhere();
    }
    let count = replicas.length + others.length;
    if (data === null && tally.unreachable === 0) {
      // Every member known here said "not here": one this node has not heard of yet may hold
      // it (_block_where.ts).
      const named = await placedElsewhere(rpc, hash, [...replicas, ...others], asked);
      data = await this.first(hash, named, tally, { placed: false });
      if (data !== null) this.#options.foundElsewhere();
      count += named.length;
    }
    return { data, asked: count };
  }

  /**
   * The block from the first of `peers` that sends a good copy; null when none
   * does. A peer that sends bad bytes is marked damaged, and so is one that lacks
   * the block when it is `placed` (a replica).
   */
  async first(
    hash: string,
    peers: BlockPeer[],
    tally: FetchTally,
    options: { placed: boolean },
  ): Promise<Uint8Array | null> {
    for (const peer of peers) {
      let data: Uint8Array | undefined;
      try {
        const reply = await this.#options.rpc.call(peer.address, "block.get", {
          header: { hash },
        });
        if (reply.header.found === true) data = reply.data;
      } catch {
        tally.unreachable++;
        continue;
      }
      if (data !== undefined && sha256Hex(data) === hash) return data;
      if (data !== undefined || options.placed) tally.damaged.push(peer);
    }
    return null;
  }
}
