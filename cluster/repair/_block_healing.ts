/**
 * Healing of the blocks this node stores (healer.ts runs the passes): puts
 * that missed a replica replayed once it is live again (hinted handoff), each
 * local block copied to the replicas that lack it by its first live replica,
 * or handed off by a node that is no longer one, and a few local blocks
 * re-hashed each pass (scrub), a corrupt one replaced from a replica.
 */
import { readWhole, sha256Hex } from "../data/mod.ts";
import type { BlockPeer } from "../data/mod.ts";
import type { HealingContext } from "./_healing_context.ts";
import { logger } from "../../log/mod.ts";

const log = logger("healing");

const hasBatchMax = 4096;
/** Block names the scrub keeps ahead of its cursor: it lists the blocks once per this many. */
const scrubQueueMax = 1024;

/** What {@linkcode BlockHealing} needs of its healer. */
export interface BlockHealingOptions extends HealingContext {
  /** Local blocks one pass re-hashes. */
  scrubBlocksPerPass: number;
}

/** The block side of a healing pass. */
export class BlockHealing {
  #options: BlockHealingOptions;
  #scrubCursor = "";
  /** The next blocks to re-hash, in order, all after the cursor. */
  #scrubQueue: string[] = [];

  constructor(options: BlockHealingOptions) {
    this.#options = options;
  }

  /**
   * Replays puts that missed a replica which is live again (hinted handoff).
   * A writer that holds no copy (an upload's node that is no replica) takes the
   * bytes from a replica that took the put: leaving it to that replica's next
   * walk left a block written on one copy of two for as long as a walk takes,
   * and it died with that copy (seed 700586 with joins, leaves and replacements).
   */
  async hints(budget: { copies: number; short: number }): Promise<void> {
    const { engine } = this.#options;
    for (const [hash, missed] of engine.blocks.hints) {
      const replicas = engine.replicaPeers(hash);
      const due = replicas.filter((peer) => missed.has(peer.id) && engine.isLive(peer.id));
      let data: Uint8Array | null = null;
      if (due.length > 0 && budget.copies > 0) {
        try {
          data = await this.#hinted(hash, replicas.filter((peer) => !missed.has(peer.id)));
        } catch (error) {
          this.#options.failed(error);
          continue;
        }
        if (data === null) {
          engine.blocks.hints.delete(hash); // no replica holds it any more (collected)
          continue;
        }
      }
      for (const peer of due) {
        if (data === null || budget.copies <= 0) break;
        budget.copies--;
        try {
          await this.#options.rpc.call(peer.address, "block.put", { header: { hash }, data });
          missed.delete(peer.id);
          this.#options.status.hintsReplayed++;
        } catch (error) {
          this.#options.failed(error);
        }
      }
      if (missed.size === 0 || engine.replicaPeers(hash).every((peer) => !missed.has(peer.id))) {
        engine.blocks.hints.delete(hash);
      }
    }
  }

  /**
   * The bytes of a hinted block: the local copy, else one from `holders`; null
   * only when every holder answered that it has none (the block was
   * collected). A holder this node does not see live now (dead, gone) is one
   * that has not answered: the hint stays for the next pass (seed 10183560 with
   * replacements: the writer saw the only other holder dead for a moment,
   * dropped the hint as if the block were gone, and nothing else copied it
   * before that holder died for good).
   */
  async #hinted(hash: string, holders: BlockPeer[]): Promise<Uint8Array | null> {
    const { engine } = this.#options;
    if (await engine.local.hasBlock(hash)) return await readWhole(engine.local, hash);
    const others = holders.filter((peer) => peer.id !== engine.selfId);
    const live = others.filter((peer) => engine.isLive(peer.id));
    const { data, unreachable } = await engine.blocks.copyFrom(hash, live);
    if (data === null && (unreachable > 0 || live.length < others.length)) {
      throw new Error(
        `Cannot replay a put of block ${hash}: the replicas that took it do not answer`,
      );
    }
    return data;
  }

  /** Copies each local block to the replicas that lack it, or hands it off. */
  async copies(budget: { copies: number; short: number }): Promise<void> {
    const { engine } = this.#options;
    const local: string[] = [];
    for await (const hash of engine.local.listBlocks()) local.push(hash);
    // Ask each replica about the blocks it should hold, in batches.
    const asks = new Map<string, { peer: BlockPeer; hashes: string[] }>();
    const roles = new Map<string, { replicas: BlockPeer[]; mine: boolean }>();
    for (const hash of local) {
      const replicas = engine.replicaPeers(hash);
      const mine = replicas.some((peer) => peer.id === engine.selfId);
      roles.set(hash, { replicas, mine });
      for (const peer of replicas) {
        if (peer.id === engine.selfId || !engine.isLive(peer.id)) continue;
        let ask = asks.get(peer.id);
        if (ask === undefined) asks.set(peer.id, ask = { peer, hashes: [] });
        ask.hashes.push(hash);
      }
    }
    const has = new Map<string, Set<string>>(); // hash → peers known to hold it
    for (const { peer, hashes } of asks.values()) {
      for (let i = 0; i < hashes.length; i += hasBatchMax) {
        const batch = hashes.slice(i, i + hasBatchMax);
        let have: boolean[];
        try {
          const reply = await this.#options.rpc.call(peer.address, "block.has", {
            header: { hashes: batch },
          });
          have = reply.header.have as boolean[];
        } catch {
          continue; // unreachable now: next pass
        }
        batch.forEach((hash, j) => {
          if (!have[j]) return;
          let holders = has.get(hash);
          if (holders === undefined) has.set(hash, holders = new Set());
          holders.add(peer.id);
        });
      }
    }
    for (const [hash, { replicas, mine }] of roles) {
      const holders = has.get(hash) ?? new Set<string>();
      // Among the replicas, the first live one that holds the block copies it (a
      // replica that lacks it, e.g. a new member placed first, cannot lead).
      const leader = replicas.find((peer) =>
        engine.isLive(peer.id) && (peer.id === engine.selfId || holders.has(peer.id))
      );
      if (mine && leader?.id !== engine.selfId) continue;
      const missing = replicas.filter((peer) =>
        peer.id !== engine.selfId && engine.isLive(peer.id) && !holders.has(peer.id)
      );
      // A replica that is not live or did not answer may lack it as well: short too, so the
      // next pass walks again (seed 1000308 with joins, leaves and replacements: a walk that
      // still saw the other replica dead found nothing to do, and no walk came before the one
      // copy's member died for good).
      const unsure = replicas.some((peer) =>
        peer.id !== engine.selfId && (!engine.isLive(peer.id) || !holders.has(peer.id))
      );
      if (unsure) budget.short++;
      let data: Uint8Array | null = null;
      for (const peer of missing) {
        if (budget.copies <= 0) return;
        budget.copies--;
        try {
          data ??= await readWhole(engine.local, hash);
          if (sha256Hex(data) !== hash) break; // corrupt here: scrub replaces it
          await this.#options.rpc.call(peer.address, "block.put", {
            header: { hash, heal: true },
            data,
          });
          holders.add(peer.id);
          this.#options.status.blocksCopied++;
        } catch (error) {
          this.#options.failed(error);
        }
      }
      // Not a replica (a cache, or a member joined): the copy goes once every replica holds it.
      if (!mine && replicas.every((peer) => engine.isLive(peer.id) && holders.has(peer.id))) {
        await engine.local.deleteBlock(hash);
        this.#options.status.blocksHandedOff++;
      }
    }
  }

  /**
   * Re-hashes a few local blocks, in hash order across passes; replaces a
   * corrupt one from a replica. The blocks are listed once per
   * {@linkcode scrubQueueMax} re-hashed, not every pass.
   */
  async scrub(): Promise<void> {
    const { engine } = this.#options;
    if (this.#scrubQueue.length === 0) await this.#queueScrubs();
    const next = this.#scrubQueue.splice(0, this.#options.scrubBlocksPerPass);
    for (const hash of next) {
      this.#scrubCursor = hash;
      let data: Uint8Array;
      try {
        data = await readWhole(engine.local, hash);
      } catch {
        continue; // deleted meanwhile
      }
      this.#options.status.blocksScrubbed++;
      if (sha256Hex(data) === hash) continue;
      log.warn("scrub found block {hash} corrupt here; fetching a good copy", { hash });
      await engine.local.deleteBlock(hash);
      try {
        await engine.blocks.read(hash, { offset: 0, length: 0 }, new Uint8Array(0));
        await engine.local.flush();
        this.#options.status.corruptBlocksRepaired++;
      } catch (error) {
        this.#options.failed(error);
      }
    }
  }

  /** The first blocks after the cursor (from the start once past the last), at most scrubQueueMax. */
  async #queueScrubs(): Promise<void> {
    const after: string[] = [];
    const first: string[] = [];
    const keep = (list: string[], hash: string) => {
      list.push(hash);
      if (list.length > 2 * scrubQueueMax) list.sort().splice(scrubQueueMax);
    };
    for await (const hash of this.#options.engine.local.listBlocks()) {
      keep(hash > this.#scrubCursor ? after : first, hash);
    }
    const queue = after.length > 0 ? after : first;
    this.#scrubQueue = queue.sort().slice(0, scrubQueueMax);
  }
}
