/**
 * Healing and balance: a slow, repeated pass over what this node stores, so
 * that every block, object and metadata key gets back to R good copies on the
 * members placement names now.
 *
 * For each local item, placement decides the node's role:
 * - the first live replica of the item checks the other replicas and copies the
 *   item to those that lack it or lag behind (re-replication after a death, the
 *   share of a joined node, writes a replica missed: hinted handoff and
 *   anti-entropy in one); an object replica that finds itself behind another
 *   takes the newest copy itself, since the one ahead walks only on an event
 *   it sees;
 * - a node that is no longer a replica (a member joined, or this is a read
 *   cache) copies the item to the replicas that lack it and deletes its own copy
 *   once every replica is live and holds it.
 * A replica found behind an object's newest copy gets it whole only if it is
 * still behind `settleMs` later: one a writer's changes had not reached yet
 * when asked catches up by itself (_object_healing.ts).
 * Each pass also re-hashes a few local blocks (scrub) and replaces a corrupt
 * one from a replica. A pass copies at most `copiesPerPassMax` items, one at a
 * time, and stops copying when the receiving disks are short of space (the
 * receiver refuses, see `diskReserveBytes`).
 *
 * The walk over every local item costs in proportion to what the node stores,
 * so it runs when something changed, not every pass (an idle node holding
 * much does next to nothing): after a membership change (`nudge()`, or the
 * members holding a place, their states and incarnations differ from those
 * of the last walk), when a writer said other replicas lack an object this node
 * holds (a flush it could not bring them: ObjectLink.short), on the first pass,
 * again after a walk that copied, failed or left items short, and at least
 * every `antiEntropyMs` as a backstop for what no event announces
 * (a replica that missed a write and was never seen down). Every pass replays
 * hints and scrubs.
 */
import { type Clock, systemClock } from "../../core/mod.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import type { RpcCaller } from "../transport/mod.ts";
import { BlockHealing } from "./_block_healing.ts";
import { ObjectHealing } from "./_object_healing.ts";
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
  /** Longest time between two walks over every local item (default: 60 passes). */
  antiEntropyMs?: number;
  /**
   * How long a walk waits before it copies an object to a replica found behind
   * it (or takes one it is behind), to see whether changes on their way close
   * the gap (default: a fifth of the interval, at most a second).
   */
  settleMs?: number;
  /** The clock of passes; the system's unless told (a simulation). */
  clock?: Clock;
}

/** What an operator sees of healing in /v1/cluster and /metrics. */
export interface HealerStatus {
  passes: number;
  /** Passes that walked every local item (the others replayed hints and scrubbed). */
  walks: number;
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

/** Runs healing passes until stopped. */
export class Healer {
  readonly status: HealerStatus = {
    passes: 0,
    walks: 0,
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
  #blocks: BlockHealing;
  #objects: ObjectHealing;
  /** The next pass walks every item: something changed since the last walk began. */
  #walkDue = true;
  #lastWalkMs = 0;
  /** The members (id, incarnation, status) the last walk began with. */
  #walkedMembers = "";

  constructor(options: HealerOptions) {
    const { clock, ...rest } = options;
    this.#options = {
      copiesPerPassMax: 256,
      scrubBlocksPerPass: 1,
      antiEntropyMs: 60 * options.intervalMs,
      settleMs: Math.min(1_000, options.intervalMs / 5),
      ...rest,
    };
    this.#clock = clock ?? systemClock;
    const failed = (error: unknown) => this.#failed(error);
    const { engine, rpc, scrubBlocksPerPass } = this.#options;
    this.#blocks = new BlockHealing({
      engine,
      rpc,
      status: this.status,
      failed,
      scrubBlocksPerPass,
    });
    this.#objects = new ObjectHealing({
      engine,
      rpc,
      status: this.status,
      failed,
      stopped: () => this.#stopped,
      settle: () => this.#clock.sleep(this.#options.settleMs, this.#timer.signal).catch(() => {}),
    });
  }

  start(): void {
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer.abort();
    await this.#pass;
  }

  /** Something changed (a member joined, died, left or came back): the next pass walks everything. */
  nudge(): void {
    this.#walkDue = true;
  }

  /** One pass now (tests; the timer calls it too): a walk when one is due, see the module doc. */
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
    const { engine } = this.#options;
    // A dead member's grace ends without a membership event: compare what holds a place.
    const members = engine.placementMembers()
      .map((member) => `${member.id}/${member.incarnation}/${member.status}`).sort().join(" ");
    // A writer said other replicas lack objects this node holds (ObjectLink.short).
    if (engine.replica.takeShort() > 0) this.#walkDue = true;
    const walk = this.#walkDue || members !== this.#walkedMembers ||
      started - this.#lastWalkMs >= this.#options.antiEntropyMs;
    if (walk) {
      // A change announced from here on is after this walk began: it gets one of its own.
      this.#walkDue = false;
      this.#walkedMembers = members;
      this.#lastWalkMs = started;
      this.status.walks++;
    }
    try {
      await this.#blocks.hints(budget);
      if (walk) {
        await this.#blocks.copies(budget);
        await this.#objects.copies(budget);
      }
      await this.#blocks.scrub();
    } catch (error) {
      this.#walkDue = true;
      throw error;
    } finally {
      this.status.running = false;
      this.status.passes++;
      if (walk) this.status.underReplicated = budget.short; // what the last walk found
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
      // Work left, or a failure: walk again next pass until one finds all in place.
      if (busy || this.status.errors > before.errors) this.#walkDue = true;
      // A pass that found everything in place is worth a line only when debugging.
      const figures = { ...moved, underReplicated: budget.short, ms: this.status.lastPassMs };
      const message = "healing pass: {blocksCopied} blocks and {objectsCopied} objects copied, " +
        "{underReplicated} items short of copies, {ms} ms";
      if (busy) log.info(message, figures);
      else log.debug(message, figures);
    }
  }
}
