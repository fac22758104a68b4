/**
 * A deterministic simulation of the whole cluster data path: the production
 * ClusterEngine (blocks, objects, metadata), the lease manager (moves,
 * fencing by epoch, forwarded reads, takeover of a dead holder) and the core
 * store and volumes, each member with a memory disk that loses what was not
 * synced when it crashes (`_memory_disk.ts`), over the simulated network and
 * clock of `_sim_net.ts`, under a seeded schedule of faults
 * (`_cluster_sim_faults.ts`). Clients (`_cluster_sim_workload.ts`) create,
 * snapshot, clone and delete volumes and write, flush and read them through
 * lease handles of random members; the checker rules are:
 *
 * - (a) a read returns what the model allows (`_cluster_sim_model.ts`): every
 *   flushed write until it is overwritten, never torn bytes;
 * - (b) no two processes write a volume's objects under the same lease epoch;
 * - (c) a deleted volume never opens again, from any member;
 * - (d) metadata changed and read beside the data traffic is linearizable
 *   (`_meta_checker.ts`).
 *
 * Gossip is modelled as in `meta_sim.ts` (`_cluster_sim_views.ts`): each
 * member sees the others' deaths, returns, joins and leaves after its own
 * lag. A failing seed prints its number and replays exactly (same digest).
 *
 * @module
 */
import type { MemberState } from "../membership/mod.ts";
import { SimWorld } from "./_sim_net.ts";
import { SimViews } from "./_cluster_sim_views.ts";
import { checkHistory, type FinalRead, type OpRecord } from "./_meta_checker.ts";
import {
  type ClusterRuntime,
  type ClusterSimHost,
  type ClusterSimNode,
  newClusterSimNode,
  startClusterRuntime,
} from "./_cluster_sim_node.ts";
import { ClusterWorkload } from "./_cluster_sim_workload.ts";
import { replaceMember, scheduleClusterFaults } from "./_cluster_sim_faults.ts";

/** Settings of one simulated run. */
export interface ClusterSimOptions {
  seed: number;
  /** Members (3–7 in the suite). */
  nodes: number;
  /** Replicas of each block and object (2 or 3; at most `nodes`). */
  replicas: number;
  /** Length of the faulty phase. */
  chaosMs?: number;
  /**
   * Volumes only, as the simulation ran before healing and the catalogue's
   * clients (images, snapshot deletions, garbage collection) joined it: the
   * regression seeds found then replay their schedules with it.
   */
  volumesOnly?: boolean;
  /**
   * A new volume's client first reads it through random members a few times,
   * as a VM booting from a fresh clone does, before its first write: members
   * keep readers of volumes nobody holds (leases/_idle_readers.ts), which the
   * first write must make them drop.
   */
  bootReads?: boolean;
  /**
   * A third of the clients' reads of several sectors go as several requests
   * at once, as a guest's queued reads do: reads in flight together, through
   * the holder or any other member.
   */
  readBursts?: boolean;
  /**
   * Members give up a lease that nobody uses there (no client has it open, no
   * write for a while) when another member reads its volume
   * (leases/_idle_release.ts): the clients' reads elsewhere after a migration
   * free the lease, and the next write takes it from nobody. Off, members
   * keep their leases, so that earlier seeds keep their schedules.
   */
  idleRelease?: boolean;
  /**
   * A replica journal's sync takes 1-3 ms of simulated time, as an `fdatasync`
   * does, and covers only what was appended when it began: changes land while
   * it runs. Off, a sync ends at the call, so that earlier seeds keep their
   * schedules.
   */
  slowSyncs?: boolean;
  /**
   * Members join the running cluster in batches of 1–3 (up to 9 in all), and
   * the others learn of each after their own lag: placements differ between
   * members while the news spreads, and healing moves data to the new ones.
   */
  joins?: boolean;
  /**
   * Members stop gracefully (`atoll serve` on SIGTERM: the others see them
   * leave at once, and placement moves off them); half come back later.
   */
  leaves?: boolean;
  /**
   * Once in a schedule, a member dies for good (its disk is gone: it never
   * starts again) and a new member with an empty disk joins in its place, as
   * an operator replaces a failed host: placement drops it after the dead
   * grace and healing copies its data to the others. At R = 3 during the
   * faults (or after them, when none came); at R = 2 after them
   * (_cluster_sim_faults.ts, replace).
   */
  replacements?: boolean;
  /**
   * With `replacements`: an operator declares the member that died for good lost
   * (`atoll cluster lost`, cluster/lost_members.ts) through a running member, 3 s
   * after its death and again each second until that succeeds.
   */
  declareLost?: boolean;
  trace?: (line: string) => void;
  /** With `trace`: calls naming this text (an object, block or metadata key) are traced too. */
  traceObjects?: string;
}

/** What a run found. */
export interface ClusterSimResult {
  seed: number;
  violations: string[];
  faults: Record<string, number>;
  /** Client operations by kind and outcome, e.g. `write ok`, `flush failed`. */
  ops: Record<string, number>;
  /** Members at the end (more than at the start when members joined). */
  members: number;
  events: number;
  /** The same seed gives the same digest. */
  digest: string;
}

/** The settings of seed `seed` in CI and the soak: 3–7 members, 2 or 3 replicas. */
export function clusterSimSettings(seed: number, chaosMs = 20_000): ClusterSimOptions {
  return { seed, nodes: 3 + seed % 5, replicas: 2 + seed % 2, chaosMs };
}

/** Time after a crash until the others start to see the member dead. */
const deathDetectionMs = 1500;

/** A simulated cluster; see the module doc. */
export class ClusterSim implements ClusterSimHost {
  readonly world: SimWorld;
  readonly seed: number;
  readonly replicas: number;
  readonly healing: boolean;
  readonly idleRelease: boolean;
  readonly slowSyncs: boolean;
  readonly tracedObjects: string | null;
  readonly nodes = new Map<string, ClusterSimNode>();
  readonly faults: Record<string, number> = {};
  readonly violations: string[] = [];
  readonly trace: string[] | null;
  /** What each member sees of the others (`_cluster_sim_views.ts`). */
  #views: SimViews;
  #seenDead = new Set<string>();
  /** Members that died for good. */
  #gone = new Set<string>();
  readonly #declareLost: boolean;
  /** Volume uid and epoch → the process that wrote under it. */
  #writers = new Map<string, string>();
  /** Times of crashes (a crash may lose what was acknowledged and not flushed). */
  readonly crashTimes: number[] = [];
  /** Called when a member crashes (its pending operations fail). */
  #onCrash: ((id: string) => void)[] = [];

  constructor(options: ClusterSimOptions) {
    this.seed = options.seed;
    this.replicas = options.replicas;
    this.healing = options.volumesOnly !== true;
    this.idleRelease = options.idleRelease === true;
    this.slowSyncs = options.slowSyncs === true;
    this.#declareLost = options.declareLost === true;
    this.tracedObjects = options.traceObjects ?? null;
    this.world = new SimWorld(options.seed);
    this.#views = new SimViews(options.seed);
    this.trace = options.trace === undefined ? null : [];
    const ids = Array.from({ length: options.nodes }, (_, i) => `n${i}`);
    for (const id of ids) {
      this.nodes.set(id, newClusterSimNode(id, `sim${options.seed}`, ids));
      this.#views.add(id, 0, false);
    }
  }

  note(line: string): void {
    this.trace?.push(`${this.world.now().toFixed(1).padStart(9)} ${line}`);
  }

  count(fault: string): void {
    this.faults[fault] = (this.faults[fault] ?? 0) + 1;
  }

  runtimeOf(id: string): ClusterRuntime | null {
    return this.nodes.get(id)?.runtime ?? null;
  }

  noteEpoch(uid: string, epoch: number, writer: string): void {
    const key = `${uid}@${epoch}`;
    const before = this.#writers.get(key);
    if (before === undefined) this.#writers.set(key, writer);
    else if (before !== writer) {
      this.violations.push(
        `two writers of volume ${uid} under epoch ${epoch}: ${before}, ${writer}`,
      );
      this.#writers.set(key, writer);
    }
  }

  onCrash(listener: (id: string) => void): void {
    this.#onCrash.push(listener);
  }

  /** Members running now. */
  running(): ClusterSimNode[] {
    return [...this.nodes.values()].filter((node) => node.runtime !== null);
  }

  start(id: string): void {
    const node = this.nodes.get(id)!;
    if (node.runtime !== null || this.#gone.has(id)) return;
    this.#views.set(id, "alive", this.world.now());
    startClusterRuntime(this, node);
    this.note(`${id} starts (incarnation ${node.incarnation})`);
  }

  /** A new member joins the running cluster, with an empty disk, and starts. */
  join(): string {
    const id = `n${this.nodes.size}`;
    this.nodes.set(id, newClusterSimNode(id, `sim${this.seed}`, null));
    this.#views.add(id, this.world.now(), true);
    this.note(`${id} joins`);
    this.start(id);
    return id;
  }

  /** Stops `id` as `kill -9` would: its disk keeps what was synced, the rest is gone. */
  crash(id: string): void {
    this.#stop(id, "dead", this.world.now() + deathDetectionMs, "crashes");
  }

  /** Members that died for good (replaced). */
  gone(): ReadonlySet<string> {
    return this.#gone;
  }

  /** `id` dies for good, disk and all: it never starts again (see ClusterSimOptions.replacements). */
  retire(id: string): void {
    this.#gone.add(id);
    this.#stop(id, "dead", this.world.now() + deathDetectionMs, "dies for good");
    if (this.#declareLost) this.world.at(3_000, () => this.#declareLostNow(id));
  }

  /** An operator declares `id` lost through the first running member; again in 1 s on failure. */
  #declareLostNow(id: string): void {
    const runtime = this.running()[0]?.runtime;
    const retry = () => this.world.at(1_000, () => this.#declareLostNow(id));
    if (runtime === undefined || runtime === null) return void retry();
    runtime.engine.declareLost(id).then(
      () => {
        this.count("declare lost");
        this.note(`${id} declared lost`);
      },
      () => retry(),
    );
  }

  /**
   * Stops `id` as `atoll serve` does on SIGTERM, but without its flush (a
   * harsher case): it says it leaves (the others drop it from placement as they
   * hear of it) and stops; its disk keeps what was synced. Started again
   * later, it rejoins with its data.
   */
  leave(id: string): void {
    this.#stop(id, "left", this.world.now(), "leaves");
  }

  /** Stops `id`'s processes; the others see it `status` from `seenAtMs` on. */
  #stop(id: string, status: "dead" | "left", seenAtMs: number, what: string): void {
    const node = this.nodes.get(id)!;
    const runtime = node.runtime;
    if (runtime === null) return;
    this.crashTimes.push(this.world.now());
    runtime.disk.crash();
    node.runtime = null;
    this.world.setIncarnation(id, null);
    this.#views.set(id, status, seenAtMs);
    this.note(`${id} ${what}`);
    for (const listener of this.#onCrash) listener(id);
  }

  /** Makes the others see `id` dead while it keeps running (cut off), or alive again. */
  seenDead(id: string, dead: boolean): void {
    if (dead) this.#seenDead.add(id);
    else this.#seenDead.delete(id);
    if (this.nodes.get(id)!.runtime !== null) {
      this.#views.set(id, dead ? "dead" : "alive", this.world.now());
    }
  }

  view(viewer: string): MemberState[] {
    return this.#views.view(viewer, this.world.now());
  }

  /** Ends every fault: cuts heal, the network is clean, crashed members restart. */
  heal(): void {
    this.world.heal();
    Object.assign(this.world.conditions, { lossRate: 0, duplicateRate: 0, delayMaxMs: 3 });
    for (const id of this.nodes.keys()) {
      if (this.#seenDead.has(id)) this.seenDead(id, false);
      this.start(id);
    }
  }

  /** Runs a whole schedule and checks it. */
  static async run(options: ClusterSimOptions): Promise<ClusterSimResult> {
    const sim = new ClusterSim(options);
    const chaosMs = options.chaosMs ?? 30_000;
    for (const id of sim.nodes.keys()) sim.start(id);
    await sim.world.run(2_000);
    const workload = new ClusterWorkload(sim, {
      catalogue: options.volumesOnly !== true,
      bootReads: options.bootReads === true,
      readBursts: options.readBursts === true,
    });
    const chaosEnd = sim.world.now() + chaosMs;
    workload.start(chaosEnd);
    sim.world.at(1_000, () => scheduleClusterFaults(sim, chaosEnd, options));
    await sim.world.run(chaosEnd);
    sim.heal();
    await sim.world.run(chaosEnd + 20_000);
    if (options.replacements === true && sim.gone().size === 0 && replaceMember(sim)) {
      // None during the faults (always so at R = 2: _cluster_sim_faults.ts, replace): now,
      // once healing had time, then as long again for the dead grace and healing to
      // copy the lost member's data.
      sim.count("replace");
      await sim.world.run(chaosEnd + 45_000);
    }
    await workload.finalChecks();
    const metaFinals: FinalRead[] = await workload.finalMetaReads();
    const metaOps: OpRecord[] = workload.metaOps;
    sim.violations.push(...checkHistory(metaOps, metaFinals).map((v) => `metadata: ${v}`));
    if (options.trace !== undefined) { for (const line of sim.trace!) options.trace(line); }
    const idleReads = [...sim.nodes.keys()].reduce(
      (sum, id) => sum + (sim.runtimeOf(id)?.leases.counters.idleReads ?? 0),
      0,
    );
    if (idleReads > 0) workload.outcomes["idle reads (last incarnations)"] = idleReads;
    const idleReleases = [...sim.nodes.keys()].reduce(
      (sum, id) => sum + (sim.runtimeOf(id)?.leases.counters.idleReleases ?? 0),
      0,
    );
    if (idleReleases > 0) {
      workload.outcomes["leases given up unused (last incarnations)"] = idleReleases;
    }
    const appendsDuringSyncs = [...sim.nodes.keys()].reduce(
      (sum, id) => sum + (sim.runtimeOf(id)?.disk.appendsDuringSyncs ?? 0),
      0,
    );
    if (appendsDuringSyncs > 0) {
      workload.outcomes["journal appends during a sync (last incarnations)"] = appendsDuringSyncs;
    }
    return {
      seed: options.seed,
      violations: [...workload.violations, ...sim.violations],
      faults: sim.faults,
      ops: workload.outcomes,
      members: sim.nodes.size,
      events: sim.world.events,
      digest: digest(JSON.stringify([workload.log, metaOps, metaFinals, sim.violations])),
    };
  }
}

function digest(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}
