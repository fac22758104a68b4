/**
 * A throwaway S3 store for the backup tests and benchmark: Debian's `radosgw` on
 * a single-node Ceph (one mon, one memstore OSD) bound to loopback, auth none,
 * with the settings `../shared/PERFORMANCE-NOTES.md` ("Ceph on this kind of
 * machine") found to start fast and small (about 6 s). One S3 user with a
 * random key pair is made with `radosgw-admin`. Every daemon forks into the
 * background and writes its pid file in the temporary directory, so
 * {@linkcode S3Store.stop} ends exactly the processes it started (by pid) and
 * removes the directory.
 *
 * Kept in one file on purpose, beside the RADOS engine's `tests/_ceph.ts`,
 * which it may later be folded into.
 *
 * @module
 */
import { exec } from "./_nbd.ts";

/** Debian packages this store needs. */
export const radosgwPackages = ["ceph-mon", "ceph-osd", "ceph-common", "radosgw"];
/** Memory the memstore OSD may hold: room for the backup tests' few hundred MiB. */
const memstoreBytes = 4 * 1024 ** 3;
/** Time the gateway has to answer S3 requests after it is started. */
const readyTimeoutMs = 120_000;
/** Time a daemon has to exit after SIGTERM before it gets SIGKILL. */
const stopTimeoutMs = 10_000;
/** Ports each daemon may bind (ms bind port min/max), from a random base. */
const portRangeSize = 100;

/** A running throwaway S3 store. */
export interface S3Store {
  dir: string;
  /** `http://127.0.0.1:PORT`, the gateway's S3 endpoint (path-style). */
  endpoint: string;
  /**
   * The `AWS_*` variables that point an S3 client at this store (endpoint, keys,
   * region), and `AWS_SHARED_CREDENTIALS_FILE`/`AWS_CONFIG_FILE` at nothing, so
   * that the host's own profile never leaks in.
   */
  env: Record<string, string>;
  accessKeyId: string;
  secretAccessKey: string;
  /** The gateway's log (debug rgw 1: one line per request). */
  logPath: string;
  /** Pids of the daemons: mon, OSD, radosgw. */
  pids(): number[];
  /** Runs `radosgw-admin ARGS` against the cluster; throws on failure. */
  admin(args: string[]): Promise<string>;
  /** Stops every daemon it started (SIGTERM, then SIGKILL) and removes the directory. */
  stop(): Promise<void>;
}

/** Installs the Debian packages that are missing (as root, with apt). */
export async function ensureRadosgwPackages(): Promise<void> {
  const packages = radosgwPackages;
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

function configuration(dir: string, fsid: string, ports: { mon: number; rgw: number }) {
  const portMin = 30_000 + Math.floor(Math.random() * 300) * portRangeSize;
  return `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${ports.mon}
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
osd data = ${dir}/osd/$id
osd objectstore = memstore
memstore device bytes = ${memstoreBytes}
osd crush chooseleaf type = 0
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon data avail warn = 1
mon warn on pool no redundancy = false
paxos propose interval = 0.05
paxos min wait = 0.01
osd memory target = 1073741824

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:${ports.rgw}
rgw data = ${dir}/rgw
rgw enable usage log = true
rgw usage log flush threshold = 1
rgw usage log tick interval = 1
debug rgw = 1
`;
}

async function checked(command: string, args: string[]): Promise<string> {
  const out = await exec(command, args);
  if (out.code !== 0) {
    throw new Error(`Cannot run ${command} ${args.join(" ")}: exit ${out.code}\n${out.stderr}`);
  }
  return out.stdout;
}

/** Starts mon, one OSD and radosgw; waits until the gateway answers; makes one S3 user. */
export async function startRadosgw(): Promise<S3Store> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-rgw-" });
  const conf = `${dir}/ceph.conf`;
  const names: string[] = [];
  const ceph = (args: string[]) =>
    checked("ceph", ["-c", conf, "--connect-timeout", "30", ...args]);
  const admin = (args: string[]) => checked("radosgw-admin", ["-c", conf, ...args]);
  const pids = () => names.flatMap((name) => pidOf(`${dir}/run/${name}.pid`));
  const stop = async () => {
    await stopDaemons(pids());
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const ports = { mon: freePort(), rgw: freePort() };
  const accessKeyId = `ATOLL${crypto.randomUUID().replaceAll("-", "").slice(0, 15).toUpperCase()}`;
  const secretAccessKey = crypto.randomUUID() + crypto.randomUUID();
  try {
    const fsid = crypto.randomUUID();
    for (const sub of ["run", "log", "mon/a", "rgw"]) {
      await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
    }
    await Deno.writeTextFile(conf, configuration(dir, fsid, ports));
    await checked("monmaptool", [
      "--create",
      "--fsid",
      fsid,
      "--addv",
      "a",
      `[v2:127.0.0.1:${ports.mon}]`,
      `${dir}/monmap`,
    ]);
    await checked("ceph-mon", ["-c", conf, "--mkfs", "-i", "a", "--monmap", `${dir}/monmap`]);
    // Daemons fork into the background and leave their pid files (no child process
    // of ours stays open, so a test that starts the store leaks no resource).
    await checked("ceph-mon", ["-c", conf, "-i", "a"]);
    names.push("mon.a");
    const uuid = crypto.randomUUID();
    const id = (await ceph(["osd", "new", uuid])).trim();
    await Deno.mkdir(`${dir}/osd/${id}`, { recursive: true });
    await checked("ceph-osd", ["-c", conf, "-i", id, "--mkfs", "--osd-uuid", uuid]);
    await checked("ceph-osd", ["-c", conf, "-i", id]);
    names.push(`osd.${id}`);
    await checked("radosgw", ["-c", conf, "-n", "client.rgw.a"]);
    names.push("client.rgw.a");
    await waitAnswering(`http://127.0.0.1:${ports.rgw}/`);
    await admin([
      "user",
      "create",
      "--uid",
      "atoll",
      "--display-name",
      "atoll tests",
      "--access-key",
      accessKeyId,
      "--secret",
      secretAccessKey,
    ]);
  } catch (error) {
    await stop();
    throw error;
  }
  const endpoint = `http://127.0.0.1:${ports.rgw}`;
  const env = {
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    AWS_REGION: "us-east-1",
    AWS_SHARED_CREDENTIALS_FILE: `${dir}/no-credentials`,
    AWS_CONFIG_FILE: `${dir}/no-config`,
  };
  const logPath = `${dir}/log/client.rgw.a.log`;
  return { dir, endpoint, env, accessKeyId, secretAccessKey, logPath, pids, admin, stop };
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
async function stopDaemons(pids: number[]): Promise<void> {
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

/** Polls the gateway until it answers an anonymous request (any HTTP status). */
async function waitAnswering(url: string): Promise<void> {
  const started = performance.now();
  let last: unknown = null;
  while (performance.now() - started < readyTimeoutMs) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      await response.body?.cancel();
      return;
    } catch (error) {
      last = error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  throw new Error(
    `Cannot start radosgw: no answer at ${url} within ${readyTimeoutMs} ms (${last})`,
  );
}
