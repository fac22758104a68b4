/**
 * The writer's side of a block batch (Engine.blockBatch, an upload's blocks):
 * each block goes to its replicas as a put does, with the same write quorum,
 * but no replica syncs it before answering; the batch's settle() syncs this
 * node's copies and asks every member that took blocks to sync its own and
 * say how many of the batch it holds (_batch_counts.ts). A member that
 * restarted meanwhile lost what it had not synced and answers fewer; one that
 * does not answer may have too. Each block is then counted on the copies
 * shown durable: where those still make its write quorum, the member left out
 * is noted for handoff (as a put that missed it); where they do not, settle()
 * fails (store the blocks again) rather than count on them. A member of a
 * version before batches (no `block.settle`: a rolling upgrade) synced every
 * block it took before answering, and counts as holding them. Per block, an
 * upload waited for its replicas' syncs before its buffer was free for the
 * next: about a fifth of the upload's rate here (decisions.md, "Uploads in
 * batches").
 */
import type { BlockBatch } from "../../core/mod.ts";
import { ReplicaQuorumError } from "./_copy_checks.ts";
import type { BlockPeer } from "./block_service.ts";

/** Where one put of a batch landed. */
export interface BatchPut {
  /** Whether any replica stored the block for the first time. */
  stored: boolean;
  /** This node took it (synced by its own flush). */
  self: boolean;
  /** The other members that took it. */
  took: BlockPeer[];
  /** The copies its write quorum asks for. */
  quorum: number;
}

/** What a batch needs of its block service. */
export interface BatchParts {
  /** Puts a block in batch `name` (none of its replicas syncs it). */
  store(hash: string, data: Uint8Array, name: string): Promise<BatchPut>;
  /**
   * Asks `peer` to sync batch `name`; the blocks of it the peer holds, or null
   * for a member of a version before batches (it synced each as it took it).
   */
  settleOn(peer: BlockPeer, name: string): Promise<number | null>;
  /** Syncs this node's copies (its engine's flush). */
  flush(): Promise<void>;
  /** Notes members that may lack `hash` (handoff copies it to them later). */
  missed(hash: string, ids: string[]): void;
}

/** See the module doc. */
export class ReplicaBatch implements BlockBatch {
  readonly name: string;
  #parts: BatchParts;
  /** Each block put: its copies on this node and on others, and its quorum. */
  #puts = new Map<string, Omit<BatchPut, "stored">>();
  /** Per member that took blocks of the batch: how many. */
  #taken = new Map<string, { peer: BlockPeer; count: number }>();
  #settled: Promise<void> | null = null;

  constructor(name: string, parts: BatchParts) {
    this.name = name;
    this.#parts = parts;
  }

  async put(hash: string, data: Uint8Array): Promise<boolean> {
    const { stored, ...put } = await this.#parts.store(hash, data, this.name);
    for (const peer of put.took) {
      const taken = this.#taken.get(peer.id) ?? { peer, count: 0 };
      taken.count++;
      this.#taken.set(peer.id, taken);
    }
    const before = this.#puts.get(hash); // the same block twice: both puts' copies count
    this.#puts.set(hash, {
      self: put.self || before?.self === true,
      took: [...before?.took ?? [], ...put.took],
      quorum: put.quorum,
    });
    return stored;
  }

  /** Once: a later call (an upload that failed after its settle did) gets the same outcome. */
  settle(): Promise<void> {
    this.#settled ??= this.#settle();
    return this.#settled;
  }

  async #settle(): Promise<void> {
    await this.#parts.flush();
    const failed = new Map<string, string>();
    await Promise.all([...this.#taken.values()].map(async ({ peer, count }) => {
      try {
        const taken = await this.#parts.settleOn(peer, this.name);
        if (taken !== null && taken !== count) failed.set(peer.id, `${taken} of ${count}`);
      } catch (error) {
        failed.set(peer.id, `no answer: ${error instanceof Error ? error.message : String(error)}`);
      }
    }));
    if (failed.size === 0) return;
    const short: string[] = [];
    for (const [hash, put] of this.#puts) {
      const left = put.took.filter((peer) => failed.has(peer.id)).map((peer) => peer.id);
      if (left.length === 0) continue;
      const durable = new Set(put.took.map((peer) => peer.id).filter((id) => !failed.has(id)));
      if ((put.self ? 1 : 0) + durable.size >= put.quorum) this.#parts.missed(hash, left);
      else short.push(hash);
    }
    if (short.length > 0) {
      const members = [...failed].map(([id, held]) => `${id} (${held})`).join(", ");
      throw new ReplicaQuorumError(
        `Cannot make ${short.length} blocks (${short[0]}${short.length > 1 ? ", ..." : ""}) ` +
          `durable on enough replicas: ${members} may have lost what it took (a restart); ` +
          `store them again`,
      );
    }
  }
}
