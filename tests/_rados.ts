/**
 * The Ceph that the RADOS tests share: the one `tests/with_ceph.ts` started for
 * the whole test command (its conf file in `TEST_ATOLL_CEPH_CONF`), or else one
 * started for this test file alone and stopped when the file's tests end. A host
 * without Ceph's packages fails the tests that need it with one clear message;
 * none is ever skipped.
 *
 * Each caller gets its own pool (`freshPool`), so test files and tests never see
 * each other's objects.
 */
import { type CephCluster, cephTestPackages, startCeph } from "./_ceph.ts";
import { exec } from "./_nbd.ts";
import { removeData, startNode, type TestNode } from "./_node.ts";

/** What a test needs of a running Ceph: its conf file, and a way to make pools. */
export interface TestCeph {
  conf: string;
  /** Runs `rados -c CONF ARGS`; throws on failure. */
  rados(args: string[]): Promise<string>;
  /** Runs `ceph -c CONF ARGS`; throws on failure. */
  ceph(args: string[]): Promise<string>;
  /** A new, empty pool named after `label`. */
  freshPool(label: string): Promise<string>;
}

/** The environment variable through which with_ceph.ts hands its Ceph to the tests. */
export const cephConfVariable = "TEST_ATOLL_CEPH_CONF";

/** The single-node shape of a test Ceph: one mon, one OSD, pools of size 1. */
export const testCephOptions = {
  osds: 1,
  replicas: 1,
  pgs: 8,
  media: "detected",
  mgr: false,
} as const;

let shared: Promise<TestCeph> | null = null;
let pools = 0;

/** The test Ceph (started on first use when the test command did not start one). */
export function testCeph(): Promise<TestCeph> {
  return shared ??= connect();
}

async function connect(): Promise<TestCeph> {
  await requirePackages();
  const conf = Deno.env.get(cephConfVariable);
  if (conf !== undefined) return fromConf(conf);
  const cluster = await startCeph(testCephOptions);
  // Stopped when this test file's module unloads: its tests are over.
  globalThis.addEventListener("unload", () => stopNow(cluster));
  return {
    conf: `${cluster.dir}/ceph.conf`,
    rados: cluster.rados,
    ceph: cluster.ceph,
    freshPool: async (label) => {
      const name = poolName(label);
      await cluster.createPool(name);
      return name;
    },
  };
}

function fromConf(conf: string): TestCeph {
  const run = (command: string) => async (args: string[]) => {
    const out = await exec(command, ["-c", conf, ...args]);
    if (out.code !== 0) throw new Error(`Cannot run ${command} ${args.join(" ")}: ${out.stderr}`);
    return out.stdout;
  };
  const ceph = run("ceph");
  const rados = run("rados");
  return {
    conf,
    rados,
    ceph,
    freshPool: async (label) => {
      const name = poolName(label);
      await ceph(["osd", "pool", "create", name, "8", "8"]);
      await ceph(["osd", "pool", "set", name, "size", "1", "--yes-i-really-mean-it"]);
      await ceph(["osd", "pool", "application", "enable", name, "atoll"]);
      for (let attempt = 0;; attempt++) {
        try {
          await rados(["--rados-osd-op-timeout", "5", "-p", name, "create", "atoll-probe"]);
          await rados(["-p", name, "rm", "atoll-probe"]);
          return name;
        } catch (error) {
          if (attempt > 200) throw error;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    },
  };
}

function poolName(label: string): string {
  return `t-${label}-${++pools}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Fails with the packages to install when Ceph's are missing (never a skip). */
async function requirePackages(): Promise<void> {
  const listed = await exec("dpkg-query", [
    "-W",
    "-f",
    "${Package} ${Status}\n",
    ...cephTestPackages,
  ]);
  const missing = cephTestPackages.filter((name) =>
    !new RegExp(`^${name} install ok installed$`, "m").test(listed.stdout)
  );
  if (missing.length > 0) {
    throw new Error(
      `The RADOS tests need a throwaway Ceph: install ${missing.join(" ")} ` +
        `(bash tests/install_tools.sh does)`,
    );
  }
}

/** Stops the daemons synchronously (an unload handler cannot wait). */
function stopNow(cluster: CephCluster): void {
  for (const pid of cluster.pids()) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  try {
    Deno.removeSync(cluster.dir, { recursive: true });
  } catch { /* a daemon may still hold a file; the OS temp cleaner takes it */ }
}

let nodePool: Promise<string> | null = null;

/**
 * `serve` flags that put a node on the test Ceph: this test file's pool, and a
 * namespace named after the node's data directory, so that a node restarted on
 * its directory finds its volumes again and other nodes never see them, unless
 * they are given the same namespace (`shared`).
 */
export async function radosNodeArgs(data: string, shared?: string): Promise<string[]> {
  const ceph = await testCeph();
  nodePool ??= ceph.freshPool("nodes");
  const namespace = shared ?? `n-${data.split("/").filter((part) => part !== "").at(-1)}`;
  return [
    "--engine",
    "rados",
    "--ceph-conf",
    ceph.conf,
    "--pool",
    await nodePool,
    "--ceph-namespace",
    namespace,
  ];
}

/** The pool radosNodeArgs puts nodes in (made on first use). */
export async function radosNodePool(): Promise<string> {
  await radosNodeArgs("/probe");
  return await nodePool!;
}

let sharedNamespaces = 0;

/** Nodes on one namespace of the test pool: they serve the same volumes. */
export async function startRadosNodes(count: number, extraArgs: string[] = []): Promise<{
  nodes: TestNode[];
  namespace: string;
  /** A scratch directory, removed by stop(). */
  dir: string;
  stop(): Promise<void>;
}> {
  const namespace = `shared${++sharedNamespaces}-${crypto.randomUUID().slice(0, 8)}`;
  const dir = await Deno.makeTempDir({ prefix: "atoll-rados-" });
  const nodes: TestNode[] = [];
  const stop = async () => {
    for (const node of nodes) {
      await node.stop();
      await removeData(node);
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    for (let i = 0; i < count; i++) {
      const data = await Deno.makeTempDir({ prefix: "atoll-rados-node-" });
      nodes.push(
        await startNode({ data, args: [...await radosNodeArgs(data, namespace), ...extraArgs] }),
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, namespace, dir, stop };
}
