/**
 * The members of the chaos soak (chaos_soak.ts): real node processes that it
 * kills, stops, pauses and starts again on their data, waits for (alive
 * everywhere, ready, healed), reads volumes through, and whose logs it keeps.
 *
 * @module
 */
import { eventually, members, startCluster, type TestProcessCluster } from "../tests/_cluster.ts";
import { scrape } from "../tests/_metrics.ts";
import { RawNbdClient } from "../tests/_nbd_raw.ts";
import { startNode, type TestNode } from "../tests/_node.ts";
import {
  ChaosViolation,
  type ChaosVolume,
  requestDeadlineMs,
  withDeadline,
} from "./_chaos_volume.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** See the module doc. */
export class ChaosMembers {
  readonly cluster: TestProcessCluster;
  /** Per member: running (not killed, stopped or paused). */
  readonly up: boolean[];
  #flags: string[];
  #logs: string | undefined;

  private constructor(cluster: TestProcessCluster, flags: string[], logs: string | undefined) {
    this.cluster = cluster;
    this.up = cluster.nodes.map(() => true);
    this.#flags = flags;
    this.#logs = logs;
  }

  /** Starts `count` members with `serve` flags `flags`; `logs`: a directory for their logs. */
  static async start(count: number, flags: string[], logs?: string): Promise<ChaosMembers> {
    if (logs !== undefined) await Deno.mkdir(logs, { recursive: true });
    return new ChaosMembers(await startCluster(count, () => flags), flags, logs);
  }

  get count(): number {
    return this.cluster.nodes.length;
  }

  node(i: number): TestNode {
    return this.cluster.nodes[i];
  }

  /** Indexes of the members, those up only with `upOnly`. */
  indexes(upOnly = false): number[] {
    return this.cluster.nodes.map((_, i) => i).filter((i) => !upOnly || this.up[i]);
  }

  /** SIGKILLs member `i`. */
  async kill(i: number): Promise<void> {
    await this.node(i).kill9();
    this.up[i] = false;
    await this.keepLog(i);
  }

  /** Stops member `i` gracefully (SIGTERM: it leaves). */
  async stop(i: number): Promise<void> {
    await this.node(i).stop();
    this.up[i] = false;
    await this.keepLog(i);
  }

  /** Stops (SIGSTOP, `running` false) or resumes (SIGCONT) member `i`'s process. */
  async setRunning(i: number, running: boolean): Promise<void> {
    try {
      this.node(i).process.kill(running ? "SIGCONT" : "SIGSTOP");
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      throw await this.#exited(i);
    }
    this.up[i] = running;
  }

  /** Throws for the first member the run did not stop that is no longer running. */
  async checkRunning(): Promise<void> {
    for (const i of this.indexes(true)) {
      const done = await Promise.race([this.node(i).process.status, sleep(0).then(() => null)]);
      if (done !== null) throw await this.#exited(i);
    }
  }

  /** What member `i`, which exited though nothing stopped it, said last, and how it ended. */
  async #exited(i: number): Promise<ChaosViolation> {
    const { code, signal } = await this.node(i).process.status;
    await this.keepLog(i);
    const last = this.node(i).log.slice(-5).join("\n    ");
    return new ChaosViolation(
      `member ${i} exited on its own (code ${code}, signal ${signal}); its last lines:\n    ${last}`,
    );
  }

  /** Starts the members `down` again on their data; waits until all see all alive and are ready. */
  async restart(down: number[]): Promise<void> {
    const nodes = this.cluster.nodes;
    for (const i of down) {
      const seed = nodes.find((_, j) => this.up[j] && j !== i);
      nodes[i] = await startNode({
        data: nodes[i].data,
        args: this.cluster.args([
          ...(seed === undefined ? [] : ["--join", seed.gossip!]),
          ...this.#flags,
        ]),
      });
      this.up[i] = true;
    }
    await eventually("every member alive everywhere, and ready", async () => {
      const views = await Promise.all(nodes.map((node) => members(node).catch(() => [])));
      const ready = await Promise.all(nodes.map(readyz));
      return ready.every(Boolean) &&
        views.every((view) => view.filter((m) => m.state === "alive").length === nodes.length);
    }, 120_000);
  }

  /** Waits until every member ran two healing passes since now and finds nothing short of copies. */
  async healed(): Promise<void> {
    const nodes = this.cluster.nodes;
    const before = await Promise.all(nodes.map(healFigures));
    await eventually("healing settled", async () => {
      const now = await Promise.all(nodes.map(healFigures));
      return now.every((f, i) => f.passes >= before[i].passes + 2 && f.short === 0);
    }, 180_000);
  }

  /** Reads all of `volume` through member `i` in a session of its own (reads only: no lease moves). */
  async checkThrough(volume: ChaosVolume, i: number): Promise<void> {
    const client = await RawNbdClient.connect(this.node(i).nbdPort, {
      readDeadlineMs: requestDeadlineMs,
    });
    try {
      await withDeadline(client.greet().then(() => client.go(volume.name)), `open on member ${i}`);
      await volume.check(client);
    } finally {
      client.close();
    }
  }

  /** Appends member `i`'s log to the logs directory (its process is gone or about to be). */
  async keepLog(i: number): Promise<void> {
    if (this.#logs === undefined) return;
    await Deno.writeTextFile(`${this.#logs}/member${i}.log`, this.node(i).log.join("\n") + "\n", {
      append: true,
    });
  }

  /** Ends the run: every member killed; their data removed unless `keep` (logs saved beside it). */
  async end(keep: boolean): Promise<void> {
    for (const i of this.indexes()) {
      try {
        this.node(i).process.kill("SIGCONT"); // a member the run left stopped
      } catch {
        // exited already
      }
      await this.keepLog(i);
    }
    if (!keep) return await this.cluster.stop();
    for (const [i, node] of this.cluster.nodes.entries()) {
      await node.kill9();
      await Deno.writeTextFile(`${node.data}.log`, node.log.join("\n"));
      console.error(`member ${i}: data in ${node.data}, log in ${node.data}.log`);
    }
  }
}

async function healFigures(node: TestNode): Promise<{ passes: number; short: number }> {
  const figures = await scrape(node);
  return {
    passes: figures.value("atoll_heal_passes_total"),
    short: figures.value("atoll_heal_under_replicated"),
  };
}

async function readyz(node: TestNode): Promise<boolean> {
  try {
    const response = await node.fetch("/readyz");
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}
