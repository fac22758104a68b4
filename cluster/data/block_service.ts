/**
 * Content blocks across the cluster. Blocks are immutable and named by their
 * SHA-256, so any copy with the right hash is right: every block that crosses
 * the network is verified against its name, on both ends; a bad or missing copy
 * is repaired from a good one when a read finds it.
 *
 * Writes go to the R replicas that placement names and succeed once a write
 * quorum holds the block durably: a majority of R, lowered to R - floor(R/2)
 * by replicas known dead (_write_quorum.ts).
 */
import type { BlockBatch, ByteRange, NodeDisk } from "../../core/mod.ts";
import { type Clock, CorruptionError, isNoSpace, systemClock } from "../../core/mod.ts";
import { AssertionError } from "../../core/assert.ts";
import { type RpcCaller, RpcError, type RpcMethod } from "../transport/mod.ts";
import { blockWhere, blockWhereMethod } from "./_block_where.ts";
import { BlockFinder, type FetchTally } from "./_block_finder.ts";
import { writeQuorumOf } from "./_write_quorum.ts";
import { ReplicaQuorumError } from "./_copy_checks.ts";
import { type BatchPut, ReplicaBatch } from "./_block_batch.ts";

/** A member as the block service needs it. */
export interface BlockPeer {
  id: string;
  address: string;
}

/** Where the replicas of a name are, most preferred first, this node included if chosen. */
export type ReplicaPicker = (name: string) => BlockPeer[];

/** Options of {@linkcode ReplicatedBlocks}. */
export interface ReplicatedBlocksOptions {
  selfId: string;
  engine: NodeDisk;
  rpc: RpcCaller;
  replicasOf: ReplicaPicker;
  /** True when gossip declares the member dead (lowers the write quorum); none by default. */
  isDead?: (id: string) => boolean;
  /**
   * Every live member. A block no placed replica holds (new after a join, or one
   * restarted while another handed its copy off) is looked for on them all.
   */
  allPeers?: () => BlockPeer[];
  /**
   * The members gossip calls dead or gone (however long ago) that no operator
   * declared lost: a block no live member holds may be on one of them (a read
   * is then unavailable, not corrupt); none by default.
   */
  awayMembers?: () => string[];
  /** Timers (the simulation's clock); the system's unless told. */
  clock?: Clock;
  /** How long a read that found no copy anywhere waits to look once more; 5 s unless told. */
  lostConfirmMs?: number;
}

/** How long gossip may take to tell every member of a join, and a lost block's read waits. */
export const lostConfirmMsDefault = 5_000;

/** Reads and writes blocks on their replicas; the local engine keeps this node's copies. */
export class ReplicatedBlocks {
  readonly selfId: string;
  #engine: NodeDisk;
  #rpc: RpcCaller;
  #replicasOf: ReplicaPicker;
  #isDead: (id: string) => boolean;
  #allPeers: () => BlockPeer[];
  #awayMembers: () => string[];
  #clock: Clock;
  #lostConfirmMs: number;
  /** Puts that reached fewer than all replicas: name → peers that missed it (for handoff). */
  readonly hints = new Map<string, Set<string>>();
  /** `localMisses`: local copies gone or bad when read; `foundElsewhere`: not on a replica. */
  readonly counters = {
    puts: 0,
    fetched: 0,
    repaired: 0,
    localMisses: 0,
    foundElsewhere: 0,
    /** Blocks fetched that could not be kept here (a full disk). */
    notKept: 0,
  };
  #fetching = new Map<string, Promise<Uint8Array>>();
  #putting = new Map<string, Promise<boolean>>();
  /** Batches started (their names: batch()). */
  #batches = 0;
  #finder: BlockFinder;

  constructor(options: ReplicatedBlocksOptions) {
    this.selfId = options.selfId;
    this.#engine = options.engine;
    this.#rpc = options.rpc;
    this.#replicasOf = options.replicasOf;
    this.#isDead = options.isDead ?? (() => false);
    this.#allPeers = options.allPeers ?? (() => []);
    this.#awayMembers = options.awayMembers ?? (() => []);
    this.#clock = options.clock ?? systemClock;
    this.#lostConfirmMs = options.lostConfirmMs ?? lostConfirmMsDefault;
    this.#finder = new BlockFinder({
      selfId: this.selfId,
      rpc: this.#rpc,
      replicasOf: this.#replicasOf,
      allPeers: this.#allPeers,
      foundElsewhere: () => this.counters.foundElsewhere++,
    });
  }

  /** The methods other members call on this node's block service. */
  methods(): Record<string, RpcMethod> {
    return { [blockWhereMethod]: blockWhere(this.#replicasOf) };
  }

  /**
   * Stores a block on its replicas; resolves once a write quorum holds it
   * durably (a majority, or fewer when replicas are dead: _write_quorum.ts).
   * Returns whether any replica stored it for the first time.
   */
  async put(hash: string, data: Uint8Array): Promise<boolean> {
    // Concurrent puts of one block from this node: the first stores, the others wait.
    const putting = this.#putting.get(hash);
    if (putting !== undefined) return await putting.then(() => false);
    const put = this.#put(hash, data).then(({ stored }) => stored)
      .finally(() => this.#putting.delete(hash));
    this.#putting.set(hash, put);
    return await put;
  }

  /**
   * Blocks stored on their replicas as put() does, durable together once the
   * batch's settle() resolves (_block_batch.ts). Its puts never wait for
   * another's of the same block, nor one for them: each is settled by its own.
   */
  batch(): BlockBatch {
    const name = `${this.selfId}.${Math.round(this.#clock.now())}.${++this.#batches}`;
    return new ReplicaBatch(name, {
      store: (hash, data, name) => this.#put(hash, data, name),
      settleOn: async (peer, name) => {
        // Where the member is now (a restart may have moved it), else where it took the blocks.
        const address = this.#allPeers().find((live) => live.id === peer.id)?.address ??
          peer.address;
        try {
          const reply = await this.#rpc.call(address, "block.settle", { header: { batch: name } });
          return Number(reply.header.taken);
        } catch (error) {
          // A version before batches syncs every put it takes before answering.
          if (unknownSettle(error)) return null;
          throw error;
        }
      },
      flush: () => this.#engine.flush(),
      missed: (hash, ids) => this.hints.set(hash, new Set([...this.hints.get(hash) ?? [], ...ids])),
    });
  }

  /** A put (in `batch`: synced at its settle); where the block landed. */
  async #put(
    hash: string,
    data: Uint8Array,
    batch?: string,
  ): Promise<BatchPut> {
    this.counters.puts++;
    const replicas = this.#replicasOf(hash);
    const quorum = writeQuorumOf(replicas.map((peer) => peer.id), this.#isDead);
    const results = await Promise.allSettled(replicas.map(async (peer) => {
      if (peer.id === this.selfId) {
        const stored = await this.#engine.putBlock(hash, data);
        if (batch === undefined) await this.#engine.flush();
        return stored;
      }
      const header = batch === undefined ? { hash } : { hash, batch };
      const reply = await this.#rpc.call(peer.address, "block.put", { header, data });
      return reply.header.stored === true;
    }));
    const missed = replicas.filter((_, i) => results[i].status === "rejected");
    if (missed.length > 0) this.hints.set(hash, new Set(missed.map((peer) => peer.id)));
    const succeeded = results.filter((result) => result.status === "fulfilled");
    if (succeeded.length < quorum) {
      // This node's disk is full: say so (a state no wait cures soon).
      for (const result of results) {
        if (result.status === "rejected" && isNoSpace(result.reason)) throw result.reason;
      }
      // Unavailable, not a failure: a replica that does not answer yet is not declared dead
      // yet, and a request waits for that (core/patient_authority.ts). A plain error here
      // failed a guest's FLUSH with EIO when the flush stored map pages right after a member
      // was killed (deno task chaos, seed 33, 4 members, R=2).
      throw new ReplicaQuorumError(
        `Cannot store block ${hash}: ${succeeded.length} of ${replicas.length} replicas took it, ` +
          `${quorum} needed`,
      );
    }
    const took = replicas.filter((_, i) => results[i].status === "fulfilled");
    return {
      stored: succeeded.some((result) => (result as PromiseFulfilledResult<boolean>).value),
      self: took.some((peer) => peer.id === this.selfId),
      took: took.filter((peer) => peer.id !== this.selfId),
      quorum,
    };
  }

  /**
   * Reads `range` of a block: from the local copy when there is one, else the
   * whole block from the replicas in order (then from any live member that holds
   * it), verified, kept as a local copy, and repairing replicas found bad or
   * missing on the way. Fails only when no live member holds a good copy.
   */
  async read(hash: string, range: ByteRange, into: Uint8Array): Promise<void> {
    if (await this.#engine.hasBlock(hash)) {
      try {
        return await this.#engine.readBlock(hash, range, into);
      } catch (error) {
        if (error instanceof AssertionError) throw error;
        // Gone since hasBlock() (healing handed it off, or it was collected), or a
        // bad copy (short): not a loss while another member holds a good one.
        this.counters.localMisses++;
      }
    }
    let fetching = this.#fetching.get(hash);
    if (fetching === undefined) {
      fetching = this.#pull(hash).finally(() => this.#fetching.delete(hash));
      this.#fetching.set(hash, fetching);
    }
    const data = await fetching;
    if (range.offset + range.length > data.length) {
      throw new RangeError(`Cannot read block ${hash}: range past its ${data.length} bytes`);
    }
    into.set(data.subarray(range.offset, range.offset + range.length));
  }

  async #pull(hash: string): Promise<Uint8Array> {
    let tally: FetchTally = { unreachable: 0, damaged: [] };
    let found = await this.#finder.find(hash, tally);
    if (found.data === null && tally.unreachable === 0 && this.#awayMembers().length === 0) {
      // Every member known here, and every one they place it on, said "not here". A member
      // that joined lately may still be unknown to them all (seed 10031090 with joins: the
      // writer had joined 1 s before, and neither the reader nor the two members it knew had
      // heard of it): a loss is declared only once gossip had time to spread.
      await this.#clock.sleep(this.#lostConfirmMs);
      tally = { unreachable: 0, damaged: [] };
      found = await this.#finder.find(hash, tally);
    }
    const { data, asked } = found;
    if (data === null) {
      const away = this.#awayMembers();
      const message = `Cannot read block ${hash}: no live member holds a good copy ` +
        `(${asked} asked, ${tally.unreachable} unreachable` +
        (away.length > 0 ? `; away: ${away.slice(0, 5).join(", ")})` : ")");
      // A member that did not answer, or one down lately, may hold it: unavailable (a request
      // waits, HTTP 503), not lost; every member answered and none is away: corruption.
      if (tally.unreachable > 0 || away.length > 0) throw new ReplicaQuorumError(message);
      throw new CorruptionError(message);
    }
    this.counters.fetched++;
    try {
      await this.#keepLocal(hash, data);
    } catch (error) {
      // No room to keep a copy here: the read has its bytes all the same (healing
      // brings the copy once there is room, if this node is a replica).
      if (!isNoSpace(error)) throw error;
      this.counters.notKept++;
    }
    for (const bad of tally.damaged) {
      this.counters.repaired++;
      this.#rpc.call(bad.address, "block.put", { header: { hash, repair: true }, data })
        .catch(() => {});
    }
    return data;
  }

  /**
   * A verified copy of the block from the first of `peers` that sends one, not
   * kept here (hinted handoff by a writer that holds no copy); `unreachable`:
   * how many of them did not answer.
   */
  async copyFrom(
    hash: string,
    peers: BlockPeer[],
  ): Promise<{ data: Uint8Array | null; unreachable: number }> {
    const tally: FetchTally = { unreachable: 0, damaged: [] };
    const data = await this.#finder.first(hash, peers, tally, { placed: false });
    return { data, unreachable: tally.unreachable };
  }

  /**
   * Keeps a verified copy here (a cache: healing hands it back when this node is
   * no replica), durable at once: other members count it as a copy when this node
   * is one of the block's replicas. A local copy of another size is bad: replaced.
   */
  async #keepLocal(hash: string, data: Uint8Array): Promise<void> {
    let size: number | null = null;
    try {
      size = await this.#engine.blockSize(hash);
    } catch { /* no copy here */ }
    if (size !== null && size !== data.length) await this.#engine.deleteBlock(hash);
    await this.#engine.putBlock(hash, data);
    await this.#engine.flush();
  }
}

/** True when `error` is a member's answer that it serves no `block.settle` (a version before). */
function unknownSettle(error: unknown): boolean {
  return error instanceof RpcError && !error.unreachable && error.remoteName === "TypeError" &&
    error.message.includes("unknown method block.settle");
}
