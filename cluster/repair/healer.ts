/**
 * Healing and balance: a slow, repeated pass over what this node stores, so
 * that every block, object and metadata key gets back to R good copies on the
 * members placement names now.
 *
 * For each local item, placement decides the node's role:
 * - the first live replica of the item checks the other replicas and copies the
 *   item to those that lack it or lag behind (re-replication after a death, the
 *   share of a joined node, writes a replica missed: hinted handoff and
 *   anti-entropy in one);
 * - a node that is no longer a replica (a member joined, or this is a read
 *   cache) copies the item to the replicas that lack it and deletes its own copy
 *   once every replica is live and holds it.
 * Each pass also re-hashes a few local blocks (scrub) and replaces a corrupt
 * one from a replica. A pass copies at most `copiesPerPassMax` items, one at a
 * time, and stops copying when the receiving disks are short of space (the
 * receiver refuses, see `diskReserveBytes`).
 */
import { type Clock, systemClock } from "../../core/mod.ts";
import { compareStamps, type Stamp } from "../data/mod.ts";
import { readWhole, sha256Hex } from "../data/mod.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import type { RpcCaller } from "../transport/mod.ts";
import type { BlockPeer } from "../data/mod.ts";
import { logger } from "../../log/mod.ts";

const log = logger("healing");

/** Options of {@linkcode Healer}. */
export interface HealerOptions {
  engine: ClusterEngine;
  rpc: RpcCaller;
  /** Pause between passes. */
  intervalMs: number;
  /** Most items one pass copies (throttle). */
  copiesPerPassMax?: number;
  /** Local blocks one pass re-hashes. */
  scrubBlocksPerPass?: number;
  /** The clock of passes; the system's unless told (a simulation). */
  clock?: Clock;
}

/** What an operator sees of healing in /v1/cluster and /metrics. */
export interface HealerStatus {
  passes: number;
  running: boolean;
  lastPassMs: number;
  /** Items found short of copies in the last pass (0 when all is well). */
  underReplicated: number;
  blocksCopied: number;
  hintsReplayed: number;
  blocksHandedOff: number;
  objectsCopied: number;
  objectsHandedOff: number;
  blocksScrubbed: number;
  corruptBlocksRepaired: number;
  errors: number;
  /** The last failure, for an operator (null when none yet). */
  lastError: string | null;
}

const hasBatchMax = 4096;
/** Local objects whose replicas' stamps one call asks for (at most object.stamps' limit). */
const objectsPerAskMax = 1024;

/** Runs healing passes until stopped. */
export class Healer {
  readonly status: HealerStatus = {
    passes: 0,
    running: false,
    lastPassMs: 0,
    underReplicated: 0,
    blocksCopied: 0,
    hintsReplayed: 0,
    blocksHandedOff: 0,
    objectsCopied: 0,
    objectsHandedOff: 0,
    blocksScrubbed: 0,
    corruptBlocksRepaired: 0,
    errors: 0,
    lastError: null,
  };
  #options: Required<Omit<HealerOptions, "clock">>;
  #clock: Clock;
  /** Aborts the pause before the next pass. */
  #timer = new AbortController();
  #stopped = false;
  #pass: Promise<void> | null = null;
  #scrubCursor = "";

  constructor(options: HealerOptions) {
    const { clock, ...rest } = options;
    this.#options = { copiesPerPassMax: 256, scrubBlocksPerPass: 4, ...rest };
    this.#clock = clock ?? systemClock;
  }

  start(): void {
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer.abort();
    await this.#pass;
  }

  /** One pass now (tests; the timer calls it too). */
  pass(): Promise<void> {
    this.#pass ??= this.#run().finally(() => this.#pass = null);
    return this.#pass;
  }

  #failed(error: unknown): void {
    this.status.errors++;
    this.status.lastError = error instanceof Error ? error.message : String(error);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#clock.sleep(this.#options.intervalMs, this.#timer.signal).then(async () => {
      await this.pass().catch((error) => {
        this.#failed(error);
        log.warn("healing pass failed: {error}", { error: error.message });
      });
      this.#schedule();
    }, () => {/* stopped */});
  }

  async #run(): Promise<void> {
    const started = this.#clock.now();
    this.status.running = true;
    const budget = { copies: this.#options.copiesPerPassMax, short: 0 };
    const before = { ...this.status };
    try {
      await this.#hints(budget);
      await this.#blocks(budget);
      await this.#objects(budget);
      await this.#scrub();
    } finally {
      this.status.running = false;
      this.status.passes++;
      this.status.underReplicated = budget.short;
      this.status.lastPassMs = Math.round(this.#clock.now() - started);
      const moved = {
        blocksCopied: this.status.blocksCopied - before.blocksCopied,
        hintsReplayed: this.status.hintsReplayed - before.hintsReplayed,
        blocksHandedOff: this.status.blocksHandedOff - before.blocksHandedOff,
        objectsCopied: this.status.objectsCopied - before.objectsCopied,
        objectsHandedOff: this.status.objectsHandedOff - before.objectsHandedOff,
        corruptBlocksRepaired: this.status.corruptBlocksRepaired - before.corruptBlocksRepaired,
      };
      const busy = Object.values(moved).some((n) => n > 0) || budget.short > 0;
      // A pass that found everything in place is worth a line only when debugging.
      const figures = { ...moved, underReplicated: budget.short, ms: this.status.lastPassMs };
      const message = "healing pass: {blocksCopied} blocks and {objectsCopied} objects copied, " +
        "{underReplicated} items short of copies, {ms} ms";
      if (busy) log.info(message, figures);
      else log.debug(message, figures);
    }
  }

  /** Replays puts that missed a replica which is live again (hinted handoff). */
  async #hints(budget: { copies: number; short: number }): Promise<void> {
    const { engine } = this.#options;
    for (const [hash, missed] of engine.blocks.hints) {
      if (!(await engine.local.hasBlock(hash))) {
        engine.blocks.hints.delete(hash); // a replica's anti-entropy covers it
        continue;
      }
      for (const peer of engine.replicaPeers(hash)) {
        if (!missed.has(peer.id) || !engine.isLive(peer.id) || budget.copies <= 0) continue;
        budget.copies--;
        try {
          const data = await readWhole(engine.local, hash);
          await this.#options.rpc.call(peer.address, "block.put", { header: { hash }, data });
          missed.delete(peer.id);
          this.status.hintsReplayed++;
        } catch (error) {
          this.#failed(error);
        }
      }
      if (missed.size === 0 || engine.replicaPeers(hash).every((peer) => !missed.has(peer.id))) {
        engine.blocks.hints.delete(hash);
      }
    }
  }

  async #blocks(budget: { copies: number; short: number }): Promise<void> {
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
      if (missing.length > 0) budget.short++;
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
          this.status.blocksCopied++;
        } catch (error) {
          this.#failed(error);
        }
      }
      // Not a replica (a cache, or a member joined): the copy goes once every replica holds it.
      if (!mine && replicas.every((peer) => engine.isLive(peer.id) && holders.has(peer.id))) {
        await engine.local.deleteBlock(hash);
        this.status.blocksHandedOff++;
      }
    }
  }

  async #objects(budget: { copies: number; short: number }): Promise<void> {
    const { engine } = this.#options;
    let batch: string[] = [];
    for await (const name of engine.local.listObjects()) {
      batch.push(name);
      if (batch.length < objectsPerAskMax) continue;
      if (!await this.#objectBatch(batch, budget)) return;
      batch = [];
    }
    if (batch.length > 0) await this.#objectBatch(batch, budget);
  }

  /**
   * The stamps each live replica holds of `names` (those placed on it), one
   * call per replica; a replica that does not answer is left out (its objects
   * are left alone this pass). They may be a little old by the time an object
   * is looked at: copies apply only when newer, and a hand-off checks again.
   */
  async #peerStamps(names: string[]): Promise<Map<string, Map<string, Stamp>>> {
    const { engine } = this.#options;
    const asks = new Map<string, { peer: BlockPeer; names: string[] }>();
    for (const name of names) {
      for (const peer of engine.replicaPeers(name)) {
        if (peer.id === engine.selfId || !engine.isLive(peer.id)) continue;
        let ask = asks.get(peer.id);
        if (ask === undefined) asks.set(peer.id, ask = { peer, names: [] });
        ask.names.push(name);
      }
    }
    const known = new Map<string, Map<string, Stamp>>();
    await Promise.all([...asks.values()].map(async ({ peer, names }) => {
      try {
        const reply = await this.#options.rpc.call(peer.address, "object.stamps", {
          header: { names },
        });
        const stamps = reply.header.stamps as Stamp[];
        known.set(peer.id, new Map(names.map((name, i) => [name, stamps[i]])));
      } catch {
        // unreachable now: its objects wait for the next pass
      }
    }));
    return known;
  }

  /** One batch of local objects; false when the pass must stop (stopped, or out of copies). */
  async #objectBatch(
    names: string[],
    budget: { copies: number; short: number },
  ): Promise<boolean> {
    const { engine } = this.#options;
    const known = await this.#peerStamps(names);
    for (const name of names) {
      if (this.#stopped) return false;
      const replicas = engine.replicaPeers(name);
      const mine = replicas.some((peer) => peer.id === engine.selfId);
      const others = replicas.filter((peer) => peer.id !== engine.selfId && engine.isLive(peer.id));
      const [stamp] = await engine.replica.stamps([name]);
      const stamps = others.map((peer) => known.get(peer.id)?.get(name) ?? null);
      if (mine) {
        // The first live replica whose copy is the newest copies it to the others.
        let best = stamp;
        for (const other of stamps) {
          if (other !== null && compareStamps(other, best) > 0) best = other;
        }
        const stampOf = (id: string) =>
          id === engine.selfId ? stamp : stamps[others.findIndex((peer) => peer.id === id)];
        const leader = replicas.find((peer) => {
          const copy = engine.isLive(peer.id) ? stampOf(peer.id) : null;
          return copy != null && compareStamps(copy, best) === 0;
        });
        if (leader?.id !== engine.selfId) continue;
      }
      const behind = others.filter((_, i) =>
        stamps[i] !== null && compareStamps(stamps[i]!, stamp) < 0
      );
      if (behind.length > 0) budget.short++;
      const current = new Set(
        others.filter((_, i) => stamps[i] !== null && compareStamps(stamps[i]!, stamp) >= 0),
      );
      for (const peer of behind) {
        if (budget.copies <= 0) return false;
        budget.copies--;
        try {
          const { data, stamp } = await engine.replica.read(name, 0, -1);
          await this.#options.rpc.call(peer.address, "object.change", {
            header: {
              name,
              epoch: stamp[0],
              version: stamp[1],
              replace: true,
              offset: 0,
              remove: data.length === 0,
            },
            data,
          });
          await this.#options.rpc.call(peer.address, "object.flush", { header: {} });
          current.add(peer);
          this.status.objectsCopied++;
        } catch (error) {
          this.#failed(error);
        }
      }
      // Not a replica (any more): the copy goes once every replica is live and
      // holds it durably, with its stamp, unless it changed meanwhile.
      if (!mine && replicas.every((peer) => current.has(peer))) {
        if (await this.#durableOnAll(name, stamp, replicas)) {
          if (await engine.replica.drop(name, stamp)) this.status.objectsHandedOff++;
        }
      }
    }
    return true;
  }

  /** True when every one of `peers` holds `name` durably at `stamp` or later. */
  async #durableOnAll(name: string, stamp: Stamp, peers: BlockPeer[]): Promise<boolean> {
    const answers = await Promise.allSettled(peers.map(async (peer) => {
      const reply = await this.#options.rpc.call(peer.address, "object.flush", {
        header: { names: [name] },
      });
      return (reply.header.stamps as Stamp[])[0];
    }));
    return answers.every((answer) =>
      answer.status === "fulfilled" && compareStamps(answer.value, stamp) >= 0
    );
  }

  async #scrub(): Promise<void> {
    const { engine } = this.#options;
    const hashes: string[] = [];
    for await (const hash of engine.local.listBlocks()) hashes.push(hash);
    hashes.sort();
    let next = hashes.filter((hash) => hash > this.#scrubCursor)
      .slice(0, this.#options.scrubBlocksPerPass);
    if (next.length === 0) next = hashes.slice(0, this.#options.scrubBlocksPerPass);
    for (const hash of next) {
      this.#scrubCursor = hash;
      let data: Uint8Array;
      try {
        data = await readWhole(engine.local, hash);
      } catch {
        continue; // deleted meanwhile
      }
      this.status.blocksScrubbed++;
      if (sha256Hex(data) === hash) continue;
      log.warn("scrub found block {hash} corrupt here; fetching a good copy", { hash });
      await engine.local.deleteBlock(hash);
      try {
        await engine.blocks.read(hash, { offset: 0, length: 0 }, new Uint8Array(0));
        await engine.local.flush();
        this.status.corruptBlocksRepaired++;
      } catch (error) {
        this.#failed(error);
      }
    }
  }
}
