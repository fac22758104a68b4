/**
 * A deterministic simulation of the cluster's metadata: the production
 * acceptor, proposer, node configuration and reconfiguration (`../meta/`),
 * each node with its own durable state, run over a simulated network and clock
 * (`_sim_net.ts`) under a seeded schedule of faults, while clients change and
 * read registers through random members. The checker (`_meta_checker.ts`)
 * then says whether anything that must never happen happened.
 *
 * Gossip is modelled, not run: each member sees the others' status changes
 * (join, death, return, leave) after its own random lag, so views disagree as
 * they do in a real cluster. Safety must not depend on views; only progress does.
 *
 * @module
 */
import type { Register, VoterCandidate } from "../meta/mod.ts";
import { SimWorld } from "./_sim_net.ts";
import { lagMs, type SimNode, startRuntime, type Status } from "./_sim_node.ts";
import { checkHistory, type FinalRead, type OpRecord } from "./_meta_checker.ts";
import { scheduleFaults } from "./_meta_faults.ts";

/** Settings of one simulated run. */
export interface MetaSimOptions {
  seed: number;
  /** Members at the start (3–9 in the suite). */
  nodes: number;
  /** Length of the faulty phase. */
  chaosMs?: number;
}

/** What a run found. */
export interface MetaSimResult {
  seed: number;
  violations: string[];
  /** Faults injected, by kind. */
  faults: Record<string, number>;
  ops: { total: number; acknowledged: number };
  /** Changes of voters completed (summed over members' counters). */
  reconfigurations: number;
  events: number;
  /** The same seed gives the same digest. */
  digest: string;
}

/** Keys the workload uses. */
const keys = ["volume/a", "volume/b", "image/c", "snapshot/a@s"];
/** A dead member keeps its vote this long (`--dead-grace`). */
export const simDeadGraceMs = 6000;

/** A simulated cluster; see the module doc. */
export class MetaSim {
  readonly world: SimWorld;
  readonly nodes = new Map<string, SimNode>();
  readonly ops: OpRecord[] = [];
  readonly faults: Record<string, number> = {};
  /** Members killed for good (never restarted). */
  readonly killed = new Set<string>();
  #seenDead = new Set<string>();
  /** Lines of what happened, when tracing (a failing seed replayed with `trace`). */
  readonly trace: string[] | null;
  readonly seed: number;
  #lags = new Map<string, Map<string, number[]>>();
  #opCount = 0;

  constructor(seed: number, trace = false) {
    this.seed = seed;
    this.world = new SimWorld(seed);
    this.trace = trace ? [] : null;
  }

  /** Adds a line to the trace (when tracing). */
  note(line: string): void {
    this.trace?.push(`${this.world.now().toFixed(1).padStart(9)} ${line}`);
  }

  /** Adds a member that starts now; the first one bootstraps the cluster. */
  add(): SimNode {
    const id = `n${String(this.nodes.size).padStart(2, "0")}`;
    const node: SimNode = {
      id,
      incarnation: 0,
      states: new Map(),
      config: { clusterId: null, config: null },
      clockOffsetMs: (this.world.random.next() - 0.5) * 600_000,
      history: [{ atMs: this.world.now(), status: "alive" }],
      runtime: null,
    };
    if (this.nodes.size === 0) {
      const clusterId = `sim${this.seed}`;
      node.config = { clusterId, config: { epoch: 1, clusterId, voters: [id], next: null } };
    }
    this.nodes.set(id, node);
    this.note(`${id} joins`);
    startRuntime(this, node);
    return node;
  }

  /** Stops `id` as `kill -9` would: what it saved stays, everything else goes. */
  crash(id: string): void {
    const node = this.nodes.get(id)!;
    if (node.runtime === null) return;
    node.runtime = null;
    this.note(`${id} crashes`);
    this.world.setIncarnation(id, null);
    this.#status(node, "dead");
  }

  /** Starts a crashed member again on its saved state. */
  restart(id: string): void {
    const node = this.nodes.get(id)!;
    if (node.runtime !== null || this.#last(node) === "left") return;
    this.#status(node, "alive");
    this.note(`${id} restarts`);
    startRuntime(this, node);
  }

  /** Leaves gracefully: the others learn it, and it never comes back. */
  leave(id: string): void {
    this.crash(id);
    this.#status(this.nodes.get(id)!, "left");
  }

  /**
   * Makes the others see `id` dead (as gossip does when it is cut off) while
   * it keeps running, or alive again.
   */
  seenDead(id: string, dead: boolean): void {
    const node = this.nodes.get(id)!;
    if (dead) this.#seenDead.add(id);
    else this.#seenDead.delete(id);
    if (node.runtime !== null) this.#status(node, dead ? "dead" : "alive");
  }

  isSeenDead(id: string): boolean {
    return this.#seenDead.has(id);
  }

  /** Members running now. */
  running(): SimNode[] {
    return [...this.nodes.values()].filter((node) => node.runtime !== null);
  }

  count(fault: string): void {
    this.faults[fault] = (this.faults[fault] ?? 0) + 1;
  }

  /** One client operation through member `node`, recorded for the checker. */
  operate(node: SimNode, key: string, kind: OpRecord["kind"]): Promise<void> {
    const runtime = node.runtime!;
    const op: OpRecord = {
      node: node.id,
      key,
      kind,
      startMs: this.world.now(),
      endMs: null,
      version: null,
      tag: null,
      error: null,
    };
    this.ops.push(op);
    const id = `w${++this.#opCount}`;
    const done = kind === "read"
      ? runtime.proposer.read(key)
      : runtime.proposer.change(key, (current): Register => {
        if (kind === "delete" && current.value === null) throw new Error("absent");
        const value = kind === "delete" ? null : new TextEncoder().encode(id);
        return { version: current.version + 1, value };
      });
    this.note(`${node.id} ${kind} ${key} starts (${id})`);
    return done.then((register) => {
      this.note(
        `${node.id} ${kind} ${key} (${id}) -> v${register.version} ${
          register.value === null ? "null" : new TextDecoder().decode(register.value)
        }`,
      );
      op.endMs = this.world.now();
      op.version = register.version;
      op.tag = register.value === null ? "null" : new TextDecoder().decode(register.value);
    }, (error) => {
      op.error = (error as Error).message;
    });
  }

  /** Runs the whole schedule and checks it. */
  static async run(
    options: MetaSimOptions & { trace?: (line: string) => void },
  ): Promise<MetaSimResult> {
    const sim = new MetaSim(options.seed, options.trace !== undefined);
    const chaosMs = options.chaosMs ?? 40_000;
    for (let i = 0; i < options.nodes; i++) sim.world.at(i * 300, () => sim.add());
    await sim.world.run(8_000);
    const chaosEnd = sim.world.now() + chaosMs;
    scheduleFaults(sim, chaosEnd);
    sim.#workload(chaosEnd);
    await sim.world.run(chaosEnd);
    sim.#heal();
    await sim.world.run(chaosEnd + 3 * simDeadGraceMs + 10_000);
    const finals = await sim.#finalReads();
    const reconfigurations = sim.running().reduce(
      (sum, node) => sum + node.runtime!.reconfigurer.status.changes,
      0,
    );
    const violations = checkHistory(sim.ops, finals);
    if (options.trace !== undefined) { for (const line of sim.trace!) options.trace(line); }
    return {
      seed: options.seed,
      violations,
      faults: sim.faults,
      ops: {
        total: sim.ops.length,
        acknowledged: sim.ops.filter((op) => op.endMs !== null).length,
      },
      reconfigurations,
      events: sim.world.events,
      digest: digest(JSON.stringify([sim.ops, finals])),
    };
  }

  /** Clients: an operation every 20–150 ms through a random running member. */
  #workload(untilMs: number): void {
    const next = () => {
      if (this.world.now() >= untilMs) return;
      const running = this.running();
      if (running.length > 0) {
        const node = running[this.world.random.int(running.length)];
        const key = keys[this.world.random.int(keys.length)];
        const roll = this.world.random.next();
        this.operate(node, key, roll < 0.4 ? "read" : roll < 0.9 ? "write" : "delete");
      }
      this.world.at(20 + this.world.random.next() * 130, next);
    };
    next();
  }

  /** Ends every fault: cuts heal, the network is clean, crashed members restart. */
  #heal(): void {
    this.world.heal();
    Object.assign(this.world.conditions, { lossRate: 0, duplicateRate: 0, delayMaxMs: 3 });
    for (const node of this.nodes.values()) {
      if (this.#seenDead.has(node.id)) this.seenDead(node.id, false);
      if (node.runtime === null && !this.killed.has(node.id)) this.restart(node.id);
    }
  }

  /** Every running member reads every key (retrying a few times). */
  async #finalReads(): Promise<FinalRead[]> {
    const finals: FinalRead[] = [];
    for (const node of this.running()) {
      for (const key of keys) {
        const read: FinalRead = { node: node.id, key, version: null, tag: null, error: null };
        for (let attempt = 0; attempt < 3 && read.version === null; attempt++) {
          let register: Register | null = null;
          node.runtime!.proposer.read(key).then((value) => register = value, (error) => {
            read.error = (error as Error).message;
          });
          await this.world.run(this.world.now() + 15_000);
          if (register === null) continue;
          const { version, value } = register as Register;
          Object.assign(read, { version, error: null });
          read.tag = value === null ? "null" : new TextDecoder().decode(value);
        }
        if (read.version === null) read.error ??= "no answer";
        finals.push(read);
      }
    }
    return finals;
  }

  /** lagMs(), remembered: views are asked for at every step of every loop. */
  #lagMs(viewer: string, member: string, index: number): number {
    let byMember = this.#lags.get(viewer);
    if (byMember === undefined) this.#lags.set(viewer, byMember = new Map());
    let lags = byMember.get(member);
    if (lags === undefined) byMember.set(member, lags = []);
    return lags[index] ??= lagMs(this.seed, viewer, member, index);
  }

  /** The members as `viewer` sees them now: each change reaches it after its own lag. */
  view(viewer: SimNode): VoterCandidate[] {
    const now = this.world.now();
    const view: VoterCandidate[] = [];
    for (const member of this.nodes.values()) {
      let seen: { atMs: number; status: Status } | null = null;
      member.history.forEach((change, i) => {
        const lag = member === viewer ? 0 : this.#lagMs(viewer.id, member.id, i);
        if (change.atMs + lag <= now) seen = change;
      });
      if (seen === null) continue;
      const { atMs, status } = seen as { atMs: number; status: Status };
      view.push({
        id: member.id,
        zone: null,
        address: member.id,
        status,
        withinGrace: status === "dead" && now - atMs < simDeadGraceMs,
      });
    }
    return view;
  }

  #last(node: SimNode): Status {
    return node.history[node.history.length - 1].status;
  }

  #status(node: SimNode, status: Status): void {
    if (this.#last(node) !== status) node.history.push({ atMs: this.world.now(), status });
  }
}

function digest(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}
