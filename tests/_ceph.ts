/**
 * A throwaway Ceph cluster on loopback, for the RADOS engine's tests and the peer
 * benchmarks: one mon, optionally one mgr, and N bluestore OSDs on sparse files
 * under a temporary directory, auth none, with the settings
 * `../shared/PERFORMANCE-NOTES.md` ("Ceph on this kind of machine") found to start
 * fast and small on one host. Every daemon forks into the background and writes
 * its pid file in the directory, so {@linkcode CephCluster.stop} ends exactly the
 * processes it started (by pid) and removes the directory.
 *
 * @module
 */
import { exec } from "./_nbd.ts";

/** Debian packages the tests' Ceph needs (a mon, OSDs, the `ceph` and `rados` tools). */
export const cephTestPackages = ["ceph-mon", "ceph-osd", "ceph-common", "librados2"];
/** What the peer benchmark adds: a mgr for `ceph status`, fio's `rbd` engine (librbd). */
export const cephBenchPackages = [...cephTestPackages, "ceph-mgr", "librbd1", "fio"];
/** Sparse size of each OSD's block file: room for a few GiB at R=3. */
const osdBlockBytes = 32 * 1024 ** 3;
/** Placement groups of a pool made by {@linkcode CephCluster.createPool}. */
const testPoolPgs = 8;
/** Time the cluster has to come up with every PG active+clean. */
const healthyTimeoutMs = 120_000;
/** Time a daemon has to exit after SIGTERM before it gets SIGKILL. */
const stopTimeoutMs = 3_000;
/** Ports each daemon may bind (ms bind port min/max), from a random base. */
const portRangeSize = 200;

/** Settings of {@linkcode startCeph}. */
export interface CephOptions {
  osds: number;
  /** Pool size; min_size is one less. */
  replicas: number;
  /** Placement groups of the `rbd` pool (autoscaling is off). */
  pgs: number;
  /**
   * Bluestore's hdd or ssd tunings: `detected` keeps what Ceph reads from the disk (a
   * virtual disk often says "rotational", hence hdd); `ssd`/`hdd` force them.
   */
  media: "ssd" | "hdd" | "detected";
  /**
   * Start a mgr and an `rbd` pool (the benchmark); without, the cluster is a mon
   * and its OSDs, ready once a pool takes writes (the tests make their own pools).
   */
  mgr: boolean;
}

/** A running throwaway cluster. */
export interface CephCluster {
  dir: string;
  /** Environment that points librados clients (fio, rbd, ceph) at this cluster. */
  env: Record<string, string>;
  /** Pids of the daemons: mon, mgr, OSDs. */
  pids(): number[];
  /** Runs `rbd ARGS` against the cluster; throws on failure. */
  rbd(args: string[]): Promise<string>;
  /** Runs `ceph ARGS` against the cluster; throws on failure. */
  ceph(args: string[]): Promise<string>;
  /** Runs `rados ARGS` against the cluster; throws on failure. */
  rados(args: string[]): Promise<string>;
  /** Creates a replicated pool of the cluster's size and waits until it takes writes. */
  createPool(name: string, pgs?: number): Promise<void>;
  /** Stops every daemon it started (SIGTERM, then SIGKILL) and removes the directory. */
  stop(): Promise<void>;
}

/** Installs the Debian packages that are missing (as root, with apt). */
export async function ensureCephPackages(packages = cephBenchPackages): Promise<void> {
  const listed = await exec("dpkg-query", ["-W", "-f", "${Package} ${Status}\n", ...packages]);
  const missing = packages.filter((name) =>
    !new RegExp(`^${name} install ok installed$`, "m").test(listed.stdout)
  );
  if (missing.length === 0) return;
  console.log(`installing ${missing.join(" ")} (apt-get)`);
  const out = await exec("apt-get", ["install", "-y", "--no-install-recommends", ...missing]);
  if (out.code !== 0) throw new Error(`Cannot install ${missing.join(" ")}: ${out.stderr}`);
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function configuration(dir: string, fsid: string, monPort: number, options: CephOptions) {
  const portMin = 20_000 + Math.floor(Math.random() * 200) * portRangeSize;
  const media = options.media === "detected"
    ? ""
    : `bluestore debug enforce settings = ${options.media}\n`;
  return `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind port min = ${portMin}
ms bind port max = ${portMin + portRangeSize - 1}
ms mon client mode = crc
auth cluster required = none
auth service required = none
auth client required = none
run dir = ${dir}/run
pid file = ${dir}/run/$name.pid
admin socket = ${dir}/run/$name.asok
log file = ${dir}/log/$name.log
keyring = ${dir}/keyring
mon data = ${dir}/mon/$id
mgr data = ${dir}/mgr/$id
osd data = ${dir}/osd/$id
osd crush chooseleaf type = 0
osd pool default size = ${options.replicas}
osd pool default min size = ${Math.max(1, options.replicas - 1)}
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon data avail warn = 1
paxos propose interval = 0.05
paxos min wait = 0.01
osd memory target = 1073741824
osd objectstore = bluestore
bluestore cache autotune = false
bluestore cache size = 134217728
bluestore block path = ${dir}/osd/$id/block.file
bluestore block create = true
bluestore block size = ${osdBlockBytes}
bluestore fsck on mount = false
bluestore fsck on mkfs = false
${media}
[client]
rbd cache = false
client mount timeout = 30
`;
}

async function checked(command: string, args: string[]): Promise<string> {
  const out = await exec(command, args);
  if (out.code !== 0) {
    throw new Error(`Cannot run ${command} ${args.join(" ")}: exit ${out.code}\n${out.stderr}`);
  }
  return out.stdout;
}

/** Starts mon, mgr and `options.osds` OSDs; waits until every PG is active+clean. */
export async function startCeph(options: CephOptions): Promise<CephCluster> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-ceph-" });
  const conf = `${dir}/ceph.conf`;
  const names: string[] = [];
  const env = { CEPH_CONF: conf };
  const ceph = (args: string[]) =>
    checked("ceph", ["-c", conf, "--connect-timeout", "30", ...args]);
  const rbd = (args: string[]) => checked("rbd", ["-c", conf, ...args]);
  const rados = (args: string[]) => checked("rados", ["-c", conf, ...args]);
  const createPool = async (name: string, pgs = testPoolPgs) => {
    await ceph(["osd", "pool", "create", name, String(pgs), String(pgs)]);
    const size = String(options.replicas);
    await ceph(["osd", "pool", "set", name, "size", size, "--yes-i-really-mean-it"]);
    await ceph(["osd", "pool", "set", name, "min_size", String(Math.max(1, options.replicas - 1))]);
    await ceph(["osd", "pool", "application", "enable", name, "atoll"]);
    await waitWritable(rados, name);
  };
  // Daemons fork into the background (no child process of ours stays open, so a
  // test that starts the cluster leaks no resource) and leave their pid files.
  const spawn = async (command: string, name: string, args: string[]) => {
    await checked(command, ["-c", conf, ...args]);
    names.push(name);
  };
  const pids = () => names.flatMap((name) => pidOf(`${dir}/run/${name}.pid`));
  const stop = async () => {
    await stopDaemons(pids());
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    const fsid = crypto.randomUUID();
    const monPort = freePort();
    for (const sub of ["run", "log", "mon/a", "mgr/x"]) {
      await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
    }
    await Deno.writeTextFile(conf, configuration(dir, fsid, monPort, options));
    await checked("monmaptool", [
      "--create",
      "--fsid",
      fsid,
      "--addv",
      "a",
      `[v2:127.0.0.1:${monPort}]`,
      `${dir}/monmap`,
    ]);
    await checked("ceph-mon", ["-c", conf, "--mkfs", "-i", "a", "--monmap", `${dir}/monmap`]);
    await spawn("ceph-mon", "mon.a", ["-i", "a"]);
    if (options.mgr) await spawn("ceph-mgr", "mgr.x", ["-i", "x"]);
    for (let i = 0; i < options.osds; i++) {
      const uuid = crypto.randomUUID();
      const id = (await ceph(["osd", "new", uuid])).trim();
      await Deno.mkdir(`${dir}/osd/${id}`, { recursive: true });
      await checked("ceph-osd", ["-c", conf, "-i", id, "--mkfs", "--osd-uuid", uuid]);
      await spawn("ceph-osd", `osd.${id}`, ["-i", id]);
    }
    if (options.mgr) {
      await ceph(["osd", "pool", "create", "rbd", String(options.pgs), String(options.pgs)]);
      const minSize = String(Math.max(1, options.replicas - 1));
      await ceph([
        "osd",
        "pool",
        "set",
        "rbd",
        "size",
        String(options.replicas),
        "--yes-i-really-mean-it",
      ]);
      await ceph(["osd", "pool", "set", "rbd", "min_size", minSize]);
      await rbd(["pool", "init", "rbd"]);
      await waitHealthy(ceph, options.osds, options.pgs);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { dir, env, pids, rbd, ceph, rados, createPool, stop };
}

/** The pid in a daemon's pid file, if it wrote one. */
function pidOf(path: string): number[] {
  try {
    const pid = Number(Deno.readTextFileSync(path).trim());
    return Number.isInteger(pid) && pid > 0 ? [pid] : [];
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL for a daemon still there after stopTimeoutMs. */
export async function stopDaemons(pids: number[]): Promise<void> {
  const signal = (pid: number, name: Deno.Signal) => {
    try {
      Deno.kill(pid, name);
    } catch { /* already gone */ }
  };
  for (const pid of pids) signal(pid, "SIGTERM");
  const started = performance.now();
  while (pids.some(alive) && performance.now() - started < stopTimeoutMs) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  for (const pid of pids.filter(alive)) signal(pid, "SIGKILL");
}

/**
 * Writes and removes a probe object until the pool takes writes (its PGs are
 * active); without a mgr, `ceph status` knows no PG states.
 */
async function waitWritable(rados: (args: string[]) => Promise<string>, pool: string) {
  const started = performance.now();
  let last: unknown = null;
  while (performance.now() - started < healthyTimeoutMs) {
    try {
      await rados(["--rados-osd-op-timeout", "5", "-p", pool, "create", "atoll-probe"]);
      await rados(["-p", pool, "rm", "atoll-probe"]);
      return;
    } catch (error) {
      last = error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  throw new Error(`Cannot use pool ${pool}: no write within ${healthyTimeoutMs} ms (${last})`);
}

/** Polls `ceph status` until every OSD is up and in and every PG active+clean. */
async function waitHealthy(
  ceph: (args: string[]) => Promise<string>,
  osds: number,
  pgs: number,
) {
  const started = performance.now();
  let last = "";
  while (performance.now() - started < healthyTimeoutMs) {
    const status = JSON.parse(await ceph(["status", "-f", "json"]));
    const osdmap = status.osdmap.osdmap ?? status.osdmap;
    const states: { state_name: string; count: number }[] = status.pgmap.pgs_by_state ?? [];
    last = `${osdmap.num_up_osds}/${osds} OSDs up, PGs ${JSON.stringify(states)}`;
    const clean = states.length > 0 && states.every((s) => s.state_name === "active+clean");
    const all = (status.pgmap.num_pgs ?? 0) >= pgs;
    if (osdmap.num_up_osds === osds && osdmap.num_in_osds === osds && clean && all) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`Cannot start Ceph: not healthy within ${healthyTimeoutMs} ms (${last})`);
}
