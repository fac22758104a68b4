/**
 * A cluster of ClusterEngines in one process for tests: each node has its own
 * data directory, LocalEngine, link client, and cluster port on loopback (links,
 * and sealed RPC over HTTP for tests that call with an RpcClient); membership is
 * a list the test controls (a node is "killed" by closing its port and marking
 * it dead), so tests decide exactly who is up.
 */
import { LocalEngine } from "../core/mod.ts";
import { ClusterKey } from "../cluster/transport/mod.ts";
import { ClusterEngine } from "../cluster/cluster_engine.ts";
import type { MemberState } from "../cluster/membership/mod.ts";
import {
  type ClusterPort,
  LinkClient,
  LinkServer,
  listenClusterPort,
  rpcServer,
} from "../cluster/transport/mod.ts";
import { fileConfigDisk, NodeConfig, openNodeAcceptorLog } from "../cluster/meta/mod.ts";
import { JournalDisk } from "../cluster/data/mod.ts";

export const testClusterKey = new ClusterKey(
  new TextEncoder().encode("test-cluster-key-0123456789abcdef"),
);

/** One node of a test cluster. */
export interface TestClusterNode {
  id: string;
  dir: string;
  engine: ClusterEngine;
  /** The node's cluster port; null while it is down. */
  server: ClusterPort | null;
  /** The client the node's engine calls peers through. */
  rpc: LinkClient | null;
}

/** A cluster of `count` nodes; `members` is the shared view every node uses. */
export class TestCluster {
  readonly nodes: TestClusterNode[] = [];
  readonly members: MemberState[] = [];
  readonly replicas: number;
  readonly deadGraceMs: number;

  private constructor(replicas: number, deadGraceMs: number) {
    this.replicas = replicas;
    this.deadGraceMs = deadGraceMs;
  }

  static async start(
    count: number,
    options: { replicas?: number; deadGraceMs?: number } = {},
  ): Promise<TestCluster> {
    const cluster = new TestCluster(options.replicas ?? 3, options.deadGraceMs ?? 60_000);
    for (let i = 0; i < count; i++) await cluster.add();
    return cluster;
  }

  /**
   * Adds a node (a join): the first one bootstraps the cluster; then the
   * metadata voters are changed as the cluster would ({@linkcode settleVoters}).
   */
  async add(): Promise<TestClusterNode> {
    const id = `node-${this.nodes.length}`;
    const dir = await Deno.makeTempDir({ prefix: `atoll-${id}-` });
    const node: TestClusterNode = { id, dir, engine: null!, server: null, rpc: null };
    this.nodes.push(node);
    this.members.push({
      id,
      address: "",
      zone: null,
      weight: 1,
      incarnation: 1,
      status: "alive",
      since: 0,
    });
    await this.#open(node);
    await this.settleVoters();
    return node;
  }

  /**
   * Runs reconfiguration steps on every running node until a pass changes
   * nothing: the metadata voters are then what the members call for.
   */
  async settleVoters(): Promise<void> {
    const epochs = () =>
      this.nodes.filter((node) => node.server !== null).map((node) =>
        `${node.engine.nodeConfig.current()?.epoch}/${node.engine.nodeConfig.current()?.next}`
      ).join(",");
    for (let pass = 0; pass < 10; pass++) {
      const before = epochs();
      for (const node of this.nodes) {
        if (node.server !== null) await node.engine.reconfigurer.tick().catch(() => {});
      }
      if (epochs() === before && pass > 0) return;
    }
    throw new Error(`metadata voters did not settle: ${epochs()}`);
  }

  /**
   * An object of volume uid `fill` × 32 that `node` is no replica of, and its
   * replicas in placement order (as `node` places it).
   */
  objectOff(node: TestClusterNode, fill: string): { name: string; replicas: TestClusterNode[] } {
    let name = `${fill.repeat(32)}.1.0`;
    for (let i = 1; node.engine.replicaPeers(name).some((peer) => peer.id === node.id); i++) {
      name = `${fill.repeat(32)}.1.${i}`;
    }
    const replicas = node.engine.replicaPeers(name)
      .map((peer) => this.nodes.find((other) => other.id === peer.id)!);
    return { name, replicas };
  }

  /** Stops a node's server and marks it dead `deadForMs` ago (a crash). */
  async kill(node: TestClusterNode, deadForMs = 0): Promise<void> {
    await node.server?.shutdown();
    node.server = null;
    await node.engine.close();
    await node.rpc?.close();
    node.rpc = null;
    const member = this.members.find((member) => member.id === node.id)!;
    member.status = "dead";
    member.since = performance.now() - deadForMs;
    for (const other of this.nodes) other.engine.invalidate();
  }

  /**
   * Sets the status gossip gives a node, leaving its server as it is (e.g. a
   * killed node still "suspect": down, but not yet declared dead).
   */
  setStatus(node: TestClusterNode, status: MemberState["status"]): void {
    const member = this.members.find((member) => member.id === node.id)!;
    member.status = status;
    member.since = performance.now();
    for (const other of this.nodes) other.engine.invalidate();
  }

  /** Restarts a killed node on its data directory. */
  async revive(node: TestClusterNode): Promise<void> {
    await this.#open(node);
    const member = this.members.find((member) => member.id === node.id)!;
    member.status = "alive";
    member.since = performance.now();
    for (const other of this.nodes) other.engine.invalidate();
  }

  /** Restarts every node (a whole-cluster restart). */
  async restart(): Promise<void> {
    for (const node of this.nodes) {
      if (node.server !== null) await this.kill(node);
    }
    for (const node of this.nodes) await this.revive(node);
  }

  async stop(): Promise<void> {
    for (const node of this.nodes) {
      if (node.server !== null) {
        await node.server.shutdown();
        await node.engine.close();
        await node.rpc?.close();
      }
      await Deno.remove(node.dir, { recursive: true });
    }
  }

  async #open(node: TestClusterNode): Promise<void> {
    const local = await LocalEngine.open({ dir: node.dir });
    const saved = fileConfigDisk(`${node.dir}/cluster.json`);
    const nodeConfig = new NodeConfig(saved.state, saved.disk);
    if (node === this.nodes[0]) await nodeConfig.bootstrap(node.id);
    const rpc = node.rpc = new LinkClient(testClusterKey, nodeConfig.identity, { selfId: node.id });
    node.engine = new ClusterEngine({
      selfId: node.id,
      local,
      journal: new JournalDisk(`${node.dir}/journal`),
      acceptorStates: openNodeAcceptorLog(node.dir),
      nodeConfig,
      rpc,
      members: () => this.members,
      now: () => performance.now(),
      replicas: this.replicas,
      deadGraceMs: this.deadGraceMs,
    });
    const { identity } = nodeConfig;
    const methods = node.engine.methods();
    const links = new LinkServer({ key: testClusterKey, identity, selfId: node.id, methods });
    const requests = rpcServer(testClusterKey, identity, methods);
    node.server = listenClusterPort({ hostname: "127.0.0.1", port: 0 }, { links, requests });
    const member = this.members.find((member) => member.id === node.id)!;
    member.address = `127.0.0.1:${node.server.port}`;
    rpc.announce(member.address);
    for (const other of this.nodes) other.engine?.invalidate();
  }
}
