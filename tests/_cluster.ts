/**
 * Test harness for clusters of real node processes on loopback: one key, the
 * first node as the seed, and a wait until every node sees every other alive.
 */
import assert from "node:assert/strict";
import { removeData, startNode, type StartOptions, type TestNode } from "./_node.ts";

/** A running cluster of node processes and its scratch directory. */
export interface TestProcessCluster {
  nodes: TestNode[];
  /** Scratch directory: the key file, fault files, copies. */
  dir: string;
  /** `serve` flags that make another member of this cluster. */
  args: (extra?: string[]) => string[];
  /** Kills every node (SIGKILL) and removes every data directory. */
  stop(): Promise<void>;
}

/** Members as `GET /v1/cluster` lists them. */
export async function members(
  node: TestNode,
): Promise<{ id: string; address: string; state: string }[]> {
  return (await (await node.fetch("/v1/cluster")).json()).members;
}

/** The metadata configuration a node reports in `GET /v1/cluster`. */
export async function metadataConfiguration(
  node: TestNode,
): Promise<{ epoch: number; voters: string[]; next: string[] | null } | null> {
  const status = await (await node.fetch("/v1/cluster")).json();
  return status.metadata?.configuration ?? null;
}

/**
 * Waits until every node knows one stable metadata configuration of `voters`
 * voters (a cluster just started changes its voters as members join).
 */
export async function votersSettled(nodes: TestNode[], voters: number): Promise<void> {
  await eventually(`${voters} metadata voters known everywhere`, async () => {
    const configs = await Promise.all(nodes.map(metadataConfiguration));
    return configs.every((config) =>
      config !== null && config.next === null && config.voters.length === voters &&
      config.epoch === configs[0]!.epoch
    );
  });
}

/** Polls `check` every 100 ms until it returns true; fails after `limitMs`. */
export async function eventually(
  what: string,
  check: () => Promise<boolean>,
  limitMs = 60_000,
): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    if (await check()) return performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`${what}: not within ${limitMs} ms`);
}

/**
 * How many of `nodes` hold block `hash` in their blocks/ directory: durable
 * there (a block is renamed into place by its node's flush).
 */
export async function blockHolders(nodes: TestNode[], hash: string): Promise<number> {
  let count = 0;
  for (const node of nodes) {
    const path = `${node.data}/blocks/${hash.slice(0, 2)}/${hash}`;
    if (await Deno.stat(path).then(() => true, () => false)) count++;
  }
  return count;
}

/**
 * Starts every node of `cluster` again on its data directory (after a kill),
 * the first one without `--join`, and waits until each sees all alive.
 */
export async function restartAll(cluster: TestProcessCluster): Promise<void> {
  const nodes = cluster.nodes;
  nodes[0] = await startNode({ data: nodes[0].data, args: cluster.args() });
  for (let i = 1; i < nodes.length; i++) {
    nodes[i] = await startNode({
      data: nodes[i].data,
      args: cluster.args(["--join", nodes[0].gossip!]),
    });
  }
  await eventually(`${nodes.length} alive members everywhere`, async () => {
    const views = await Promise.all(nodes.map(members));
    return views.every((view) =>
      view.filter((member) => member.state === "alive").length === nodes.length
    );
  });
}

/**
 * Starts `count` nodes with one cluster key; `extra(i)` adds flags to node i;
 * `from` runs them from another checkout (its `main.ts`, in its directory).
 */
export async function startCluster(
  count: number,
  extra: (index: number, dir: string) => string[] = () => [],
  from: Pick<StartOptions, "entry" | "cwd"> = {},
): Promise<TestProcessCluster> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-cluster-" });
  await Deno.writeTextFile(`${dir}/key`, crypto.randomUUID().replaceAll("-", ""));
  const args = (more: string[] = []) => [
    "--gossip",
    "127.0.0.1:0",
    "--cluster-key-file",
    `${dir}/key`,
    ...more,
  ];
  const nodes: TestNode[] = [];
  const stop = async () => {
    for (const node of nodes) await node.kill9();
    for (const node of nodes) await removeData(node);
    await Deno.remove(dir, { recursive: true });
  };
  try {
    nodes.push(await startNode({ ...from, args: args(extra(0, dir)) }));
    for (let i = 1; i < count; i++) {
      nodes.push(
        await startNode({ ...from, args: args(["--join", nodes[0].gossip!, ...extra(i, dir)]) }),
      );
    }
    await eventually(`${count} alive members everywhere`, async () => {
      const views = await Promise.all(nodes.map(members));
      return views.every((view) =>
        view.length === count && view.every((member) => member.state === "alive")
      );
    });
    await votersSettled(nodes, count >= 5 ? 5 : count >= 3 ? 3 : 1);
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, dir, args, stop };
}
