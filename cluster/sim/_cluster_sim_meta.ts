/**
 * What the clients of the whole-cluster simulation share: running one
 * operation through a member (it fails when the member crashes, and counts as
 * stuck when it takes too long), the log the digest is made of, the
 * violations found, names and write tags, and clients of metadata registers
 * beside the data traffic, checked by `_meta_checker.ts`.
 *
 * @module
 */
import type { Register } from "../meta/mod.ts";
import type { FinalRead, OpRecord } from "./_meta_checker.ts";
import type { ClusterRuntime } from "./_cluster_sim_node.ts";
import type { ClusterSim } from "./cluster_sim.ts";

/** An operation taking longer than this is stuck: its outcome is unknown for good. */
const opStuckMs = 60_000;
/** Registers the metadata clients change (a kind of key the catalogue and its collections skip). */
const metaKeys = ["register/sim-a", "register/sim-b"];

/** How an operation ended. */
export type Attempt = { ok: true } | { ok: false; stuck: boolean; error: string };

/** The log, the counters and the metadata clients; see the module doc. */
export class MetaClients {
  readonly sim: ClusterSim;
  /** What happened, in order (the digest is made of it). */
  readonly log: string[] = [];
  /** What the checker rules found. */
  readonly violations: string[] = [];
  /** Operations by kind and outcome. */
  readonly outcomes: Record<string, number> = {};
  readonly metaOps: OpRecord[] = [];
  /** Callbacks failing the operations under way at a member, by member. */
  readonly pending = new Map<string, Set<(error: string) => void>>();
  #metaCount = 0;
  #tags = 0;
  #names = 0;

  constructor(sim: ClusterSim) {
    this.sim = sim;
    sim.onCrash((id) => {
      for (const fail of this.pending.get(id) ?? []) fail("its member crashed");
    });
  }

  random(): number {
    return this.sim.world.random.next();
  }

  /** A random running member. */
  randomNode(): string {
    const running = this.sim.running();
    return running[this.sim.world.random.int(running.length)].id;
  }

  /** A new write tag (`_cluster_sim_model.ts`): volume writes and image blocks share them. */
  newTag(): number {
    return ++this.#tags;
  }

  /** A new name of the catalogue: `prefix` and a number no other name has. */
  newName(prefix: string): string {
    return `${prefix}${++this.#names}`;
  }

  /** Runs the world until `promise` settles (the end of a run has no other events to wait on). */
  async settle(promise: Promise<unknown>): Promise<void> {
    let done = false;
    promise.finally(() => done = true);
    const deadline = this.sim.world.now() + opStuckMs + 1000;
    while (!done && this.sim.world.now() < deadline) {
      await this.sim.world.run(this.sim.world.now() + 100);
    }
  }

  /** Metadata clients: an operation every 100–400 ms through a random running member. */
  startMeta(untilMs: number): void {
    const next = () => {
      if (this.sim.world.now() >= untilMs) return;
      const running = this.sim.running();
      if (running.length > 0) {
        const node = running[this.sim.world.random.int(running.length)];
        const key = metaKeys[this.sim.world.random.int(metaKeys.length)];
        const roll = this.random();
        this.#metaOperate(
          node.id,
          node.runtime!,
          key,
          roll < 0.4 ? "read" : roll < 0.9 ? "write" : "delete",
        );
      }
      this.sim.world.at(100 + this.random() * 300, next);
    };
    next();
  }

  #metaOperate(node: string, runtime: ClusterRuntime, key: string, kind: OpRecord["kind"]): void {
    const op: OpRecord = {
      node,
      key,
      kind,
      startMs: this.sim.world.now(),
      endMs: null,
      version: null,
      tag: null,
      error: null,
    };
    this.metaOps.push(op);
    const id = `m${++this.#metaCount}`;
    const proposer = runtime.engine.proposer;
    const done = kind === "read"
      ? proposer.read(key)
      : proposer.change(key, (current): Register => {
        if (kind === "delete" && current.value === null) throw new Error("absent");
        return {
          version: current.version + 1,
          value: kind === "delete" ? null : new TextEncoder().encode(id),
        };
      });
    done.then((register) => {
      op.endMs = this.sim.world.now();
      op.version = register.version;
      op.tag = register.value === null ? "null" : new TextDecoder().decode(register.value);
    }, (error) => {
      op.error = (error as Error).message;
    });
  }

  /** Every running member reads every register once the faults are over. */
  async finalMetaReads(): Promise<FinalRead[]> {
    const finals: FinalRead[] = [];
    for (const node of this.sim.running()) {
      for (const key of metaKeys) {
        const read: FinalRead = { node: node.id, key, version: null, tag: null, error: null };
        await this.settle(
          node.runtime!.engine.proposer.read(key).then(({ version, value }) => {
            read.version = version;
            read.tag = value === null ? "null" : new TextDecoder().decode(value);
          }, (error) => {
            read.error = (error as Error).message;
          }),
        );
        if (read.version === null) read.error ??= "no answer";
        finals.push(read);
      }
    }
    return finals;
  }
}

/**
 * Runs `run` on member `node` (labelled `label` in the log): fails at once
 * when the member is down or when it crashes meanwhile, and as stuck after
 * {@linkcode opStuckMs}.
 */
export function attempt<T>(
  clients: MetaClients,
  node: string,
  label: string,
  run: (runtime: ClusterRuntime) => Promise<T>,
): Promise<Attempt> {
  const { sim } = clients;
  const kind = label.slice(0, label.indexOf(" "));
  const started = sim.world.now();
  const runtime = sim.runtimeOf(node);
  return new Promise<Attempt>((resolve) => {
    let settled = false;
    const failures = clients.pending.get(node) ?? new Set();
    clients.pending.set(node, failures);
    const finish = (outcome: Attempt) => {
      if (settled) return;
      settled = true;
      failures.delete(fail);
      cancelStuck();
      const word = outcome.ok ? "ok" : outcome.stuck ? "stuck" : "failed";
      clients.outcomes[`${kind} ${word}`] = (clients.outcomes[`${kind} ${word}`] ?? 0) + 1;
      const detail = outcome.ok ? "ok" : outcome.error;
      clients.log.push(
        `${started.toFixed(1)}-${sim.world.now().toFixed(1)} ${node} ${label}: ${detail}`,
      );
      sim.note(`${node} ${label}: ${detail}`);
      resolve(outcome);
    };
    const fail = (error: string) => finish({ ok: false, stuck: false, error });
    const cancelStuck = sim.world.at(
      opStuckMs,
      () => finish({ ok: false, stuck: true, error: "stuck" }),
    );
    if (runtime === null) return fail("its member is down");
    failures.add(fail);
    run(runtime).then(
      () => finish({ ok: true }),
      (error) => {
        const wrong = wrongFailure(error, (sim.faults["declare lost"] ?? 0) > 0);
        if (wrong !== null) clients.violations.push(`${label} at ${node}: ${wrong}`);
        fail(`${error.name}: ${error.message}`);
      },
    );
  });
}

/**
 * Errors no operation of the simulation may fail with: a bug's (a TypeError,
 * a RangeError, a bare Error, a failed assertion) or corruption, which only copies an operator gave
 * up (a member declared lost) may explain. The clients' requests are all well
 * formed; the cluster may refuse them only as unavailable, conflicting, not
 * found, or with writes reported lost.
 */
const bugNames = new Set([
  "Error",
  "TypeError",
  "RangeError",
  "SyntaxError",
  "ReferenceError",
  "AssertionError",
]);

/**
 * Why `error` is a failure no schedule may show, or null when it may;
 * `givenUp`: an operator declared a member lost (its copies were given up).
 */
export function wrongFailure(
  error: Error & { remoteName?: string | null },
  givenUp: boolean,
): string | null {
  const name = error.remoteName ?? error.name;
  if (bugNames.has(name) || (name === "CorruptionError" && !givenUp)) {
    return `failed with ${name}, which only a bug or lost data explains: ${error.message}`;
  }
  return null;
}
