/**
 * When and how a node collects garbage, without ever blocking provisioning.
 *
 * A collection does not hold the catalogue lock while it marks, pauses and
 * sweeps (that would make clones, snapshots and deletions wait for a whole
 * collection, seconds in a cluster). Instead it takes the lock only for an
 * instant at its start, so that catalogue changes under way have finished, and
 * from then on every catalogue change reports what its new record references
 * ({@linkcode Collector.track}); the sweep spares those. Between them, the
 * marks, the open volumes' maps and the uploads' pins cover every reference
 * (gc.ts says why).
 */
import type { BlockMap } from "./block_map.ts";
import type { Clock } from "./clock.ts";
import type { Engine } from "./engine.ts";
import { collectGarbage, type GcAdded, type GcResult } from "./gc.ts";
import { Mutex } from "./_mutex.ts";
import type { Volume } from "./volume.ts";
import { logger } from "../log/mod.ts";
import { gcDeletedBlocks, gcDeletedObjects, gcRuns, type GcTrigger } from "../metrics/mod.ts";

const log = logger("gc");

/** Past the age rule, before a failed upload's blocks are swept again (the rule's own margin). */
const agedMarginMs = 5_000;

/**
 * How a cluster makes garbage collection safe when other nodes change the
 * catalogue and upload at the same time.
 */
export interface GcPolicy {
  /** Blocks stored (or stored again) more recently than this are never deleted. */
  readonly minAgeMs: number;
  /** Blocks that uploads in progress anywhere have stored or will reference. */
  pinned(): Promise<Set<string>>;
  /**
   * The pause between the two marks; pins it learns meanwhile (a cluster asks
   * every member again) join the set `pinned()` returned.
   */
  settle(): Promise<void>;
  /** Deletes an unreferenced block unless it is too young to be sure of. */
  deleteBlock(hash: string): Promise<boolean>;
  /** Deletes an unreferenced object on every member. */
  deleteObject(name: string): Promise<void>;
  /**
   * Where a collection cannot ask this node for its uploads' pins (nodes on
   * RADOS): makes `hashes` young again (stored now), so that no collection
   * takes them before the record naming them is written; returns those gone
   * already (a block is never stored again by this). An upload calls it while
   * it runs, and once more right before its record, which a block gone fails.
   */
  refresh?(hashes: string[]): Promise<string[]>;
}

/** Options of {@linkcode Collector}. */
export interface CollectorOptions {
  engine: Engine;
  /** The cluster's rules; null on a single node. */
  policy: GcPolicy | null;
  /** The store's catalogue lock (held by every catalogue change). */
  catalogue: Mutex;
  /** The volumes open on this node now. */
  openVolumes: () => Promise<Volume>[];
  /** True when an upload in progress on this node relies on the block. */
  pinnedHere: (hash: string) => boolean;
  clock: Clock;
  /** Milliseconds after a deletion before a collection runs. */
  delayMs: number;
  /** Where a scheduled collection that fails is reported. */
  onError: (error: unknown) => void;
}

/** Runs collections one at a time, on demand or shortly after deletions. */
export class Collector {
  #options: CollectorOptions;
  #running = new Mutex();
  /** What catalogue changes referenced while a collection runs; null when none runs. */
  #added: GcAdded | null = null;
  /** Aborts the pending timer; null when none is pending. */
  #timer: AbortController | null = null;
  /** Timers of sweeps waiting for blocks to age (collectWhenOld). */
  #later = new Set<AbortController>();

  constructor(options: CollectorOptions) {
    this.#options = options;
  }

  /**
   * Called by every catalogue change, under the catalogue lock, with the map of
   * the record it writes (and the uid of a new volume): a collection running
   * now keeps what it references.
   */
  track(map: BlockMap, uid?: string): void {
    if (this.#added === null) return;
    const { blocks, objects } = map.references();
    for (const hash of blocks) this.#added.blocks.add(hash);
    for (const name of objects) this.#added.objects.add(name);
    if (uid !== undefined) this.#added.uids.add(uid);
  }

  /**
   * How often an upload keeps its blocks young (GcPolicy.refresh); null where
   * the policy needs no refresh (a single node, a ring: pins are asked).
   */
  get refreshMs(): number | null {
    const policy = this.#options.policy;
    return policy?.refresh === undefined ? null : policy.minAgeMs / 4;
  }

  /** GcPolicy.refresh, where the policy has one: the blocks of `hashes` gone already. */
  async refresh(hashes: string[]): Promise<string[]> {
    return await this.#options.policy?.refresh?.(hashes) ?? [];
  }

  /**
   * Keeps `hashes()` young (GcPolicy.refresh) until the function returned is
   * called: every {@linkcode refreshMs}, those not made young for twice that
   * (a block is young from when its upload first names it: it is being stored).
   */
  keepYoung(hashes: () => string[]): () => void {
    const every = this.refreshMs;
    if (every === null) return () => {};
    const clock = this.#options.clock;
    const timer = new AbortController();
    /** Hash → when it was last known young. */
    const young = new Map<string, number>();
    const loop = async () => {
      for (;;) {
        await clock.sleep(every, timer.signal);
        const now = clock.now();
        const due = hashes().filter((hash) => {
          const since = young.get(hash);
          if (since === undefined) young.set(hash, now);
          return since !== undefined && now - since >= 2 * every;
        });
        await this.refresh(due).then(
          () => due.forEach((hash) => young.set(hash, now)),
          (error) =>
            log.warn("cannot keep an upload's blocks young: {error}", { error: String(error) }),
        );
      }
    };
    loop().catch(() => {/* aborted: the upload ended */});
    return () => timer.abort();
  }

  /** A collection running now keeps these blocks (map pages whose record was just written). */
  keep(hashes: string[]): void {
    if (this.#added === null) return;
    for (const hash of hashes) this.#added.blocks.add(hash);
  }

  /**
   * Deletes every block and object that nothing references. With `only`, looks
   * at those blocks alone (what a failed upload stored) and at no object.
   */
  collect(only?: ReadonlySet<string>): Promise<GcResult> {
    return this.#collect(only, only === undefined ? "request" : "failed_upload");
  }

  /** Runs one collection; every one counts in /metrics, whatever started it. */
  #collect(only: ReadonlySet<string> | undefined, trigger: GcTrigger): Promise<GcResult> {
    return this.#running.run(async () => {
      const { engine, policy, catalogue, pinnedHere } = this.#options;
      const added: GcAdded = { blocks: new Set(), objects: new Set(), uids: new Set() };
      const opening = await catalogue.run(() => {
        this.#added = added;
        return this.#options.openVolumes();
      });
      try {
        const open = await Promise.all(opening.map((volume) => volume.catch(() => null)));
        // Everyone's pins are taken before the first mark: an upload's blocks are
        // either pinned, or stored after this moment (young, kept by the policy).
        const remote = policy === null ? new Set<string>() : await policy.pinned();
        const started = this.#options.clock.now();
        const result = await collectGarbage({
          engine,
          openVolumes: open.filter((volume) => volume !== null),
          pinned: (hash) => pinnedHere(hash) || remote.has(hash),
          added,
          only,
          settle: policy === null ? undefined : () => policy.settle(),
          deleteBlock: policy === null ? undefined : (hash) => policy.deleteBlock(hash),
          deleteObject: policy === null ? undefined : (name) => policy.deleteObject(name),
        });
        log.info(
          "garbage collection: {deletedBlocks} blocks and {deletedObjects} objects deleted, " +
            "{liveBlocks} blocks and {liveObjects} objects kept, {ms} ms",
          {
            ...result,
            ms: Math.round(this.#options.clock.now() - started),
            scope: only === undefined ? "all" : "failed upload",
          },
        );
        gcRuns.inc({ trigger });
        gcDeletedBlocks.inc(result.deletedBlocks);
        gcDeletedObjects.inc(result.deletedObjects);
        return result;
      } finally {
        this.#added = null;
      }
    });
  }

  /** Collects after the delay, once however many deletions ask meanwhile. */
  schedule(): void {
    if (this.#timer !== null) return;
    const timer = new AbortController();
    this.#timer = timer;
    this.#options.clock.sleep(this.#options.delayMs, timer.signal).then(() => {
      this.#timer = null;
      this.#collect(undefined, "automatic").catch(this.#options.onError);
    }, () => {/* aborted: the store closed */});
  }

  /**
   * Sweeps `only` (a failed upload's blocks) again once a cluster's age rule
   * lets it delete them: another node's upload may have found them stored, so
   * they cannot go at once, but nothing else would come back for them.
   */
  collectWhenOld(only: ReadonlySet<string>): void {
    const policy = this.#options.policy;
    if (policy === null || only.size === 0) return;
    const timer = new AbortController();
    this.#later.add(timer);
    this.#options.clock.sleep(policy.minAgeMs + agedMarginMs, timer.signal).then(
      () => this.collect(only).then(() => {}, this.#options.onError),
      () => {/* aborted: the store closed */},
    ).finally(() => this.#later.delete(timer));
  }

  /** Cancels the pending collections. */
  close(): void {
    this.#timer?.abort();
    this.#timer = null;
    for (const timer of this.#later) timer.abort();
  }
}
