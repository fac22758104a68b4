/**
 * Goal: per-volume I/O limits (issue 13, point 4) hold on the NBD path as an
 * operator measures them: a volume limited to 500 IOPS does 450 to 550, over
 * one connection and over two at once (one limiter per volume per node, not
 * per connection); a limit raised live takes effect within a second on a
 * connection already open; bad limits get a clear 400 and change nothing;
 * limits set by the CLI survive a restart of the node; in a cluster, limits
 * set at the lease holder are enforced wherever the volume is served next.
 * Method: a real node process; real fio with its nbd engine (libnbd), 4 KiB
 * random I/O at queue depth 32 over 16 MiB written first, short time-based
 * runs (3 to 4 s); fio's own
 * per-I/O completion log (unix-epoch timestamps) dates the I/Os around a live
 * change; limits are set over HTTP and through the CLI as a subprocess.
 */
import assert from "node:assert/strict";
import { startNode } from "./_node.ts";
import { startCluster } from "./_cluster.ts";
import { api, GiB, qemuIo, withNode } from "./_nbd.ts";
import { atollCli } from "./_cli.ts";
import type { TestNode } from "./_node.ts";

/** The acceptance's band around 500 IOPS. */
const iopsLow = 450;
const iopsHigh = 550;

/**
 * Bytes fio works on, written first (prefill): writes then go in place, as a
 * running VM's mostly do, instead of copying up a 4 MiB object on the first
 * touch of each block, which on this shared machine can cost more than the limit.
 */
const regionBytes = 16 * 1024 * 1024;

/** Creates `name` on `node` with `qos`, and writes its first regionBytes (the lease comes here). */
async function createWritten(node: TestNode, name: string, qos: Record<string, number>) {
  await api(node, "/v1/volumes", { name, size: GiB, qos });
  await qemuIo(node.nbdUri(name), [`write -P 1 0 ${regionBytes}`, "flush"]);
}

/** Figures of one fio job. */
interface FioJob {
  iops: number;
  ios: number;
}

/**
 * Runs fio's nbd engine on `uri` for `seconds` of 4 KiB random `rw` at queue
 * depth 32 over the first regionBytes, with `extra` arguments; answers each
 * job's figures.
 */
async function fio(uri: string, rw: string, seconds: number, extra: string[] = []) {
  const dir = await Deno.makeTempDir({ prefix: "atoll-qos-fio-" });
  try {
    const output = await new Deno.Command("fio", {
      args: [
        "--name=qos",
        "--ioengine=nbd",
        `--uri=${uri}`,
        `--rw=${rw}`,
        "--bs=4k",
        "--iodepth=32",
        `--size=${regionBytes}`,
        "--time_based",
        `--runtime=${seconds}`,
        "--output-format=json",
        `--output=${dir}/out.json`,
        ...extra,
      ],
      cwd: dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder();
    assert.equal(output.code, 0, `fio failed:\n${text.decode(output.stderr)}`);
    const result = JSON.parse(await Deno.readTextFile(`${dir}/out.json`));
    return result.jobs.map((job: Record<string, { iops: number; total_ios: number }>) => ({
      iops: job.read.iops + job.write.iops,
      ios: job.read.total_ios + job.write.total_ios,
    })) as FioJob[];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Sends `body` with `method` to the node and expects `status`; returns the body. */
async function send(node: TestNode, method: string, path: string, body: string, status: number) {
  const response = await node.fetch(path, {
    method,
    headers: { "content-type": "application/json" },
    body,
  });
  const text = await response.text();
  assert.equal(response.status, status, `${method} ${path} ${body}: ${text}`);
  return JSON.parse(text);
}

async function info(node: TestNode, name: string) {
  const response = await node.fetch(`/v1/volumes/${name}`);
  assert.equal(response.status, 200);
  return await response.json();
}

/** Runs `atoll ARGS` against `node`; answers the exit code and output. */
function atoll(node: TestNode, args: string[]) {
  return atollCli(["--node", node.url, ...args]);
}

Deno.test("a volume limited to 500 IOPS does 450-550, over one connection and over two", async () => {
  await withNode(async ({ node }) => {
    await createWritten(node, "vm1", { iops: 500 });
    const [one] = await fio(node.nbdUri("vm1"), "randwrite", 3);
    assert.ok(one.iops >= iopsLow && one.iops <= iopsHigh, `one connection: ${one.iops} IOPS`);

    // Two jobs: two libnbd handles, so two NBD connections to the same volume at once.
    // (fio's setup opens and closes one more per job, to learn the size: those last milliseconds.)
    const longLived = () =>
      node.log.filter((line) => {
        const ms = line.match(/connection to vm1 from .* closed after (\d+) ms/)?.[1];
        return ms !== undefined && Number(ms) >= 2000;
      }).length;
    const before = longLived();
    const two = await fio(node.nbdUri("vm1"), "randread", 3, ["--numjobs=2"]);
    await new Promise((resolve) => setTimeout(resolve, 200)); // the node logs the closes
    assert.equal(longLived() - before, 2, "two connections served I/O through the whole run");
    const sum = two[0].iops + two[1].iops;
    assert.ok(sum >= iopsLow && sum <= iopsHigh, `two connections: ${two.map((j) => j.iops)}`);
    for (const job of two) assert.ok(job.iops > 100, `each connection gets a share: ${job.iops}`);
  });
});

Deno.test("a limit raised live takes effect within a second on an open connection", async () => {
  await withNode(async ({ node, dir }) => {
    await createWritten(node, "vm1", { iops: 500 });
    const log = `${dir}/io`;
    const opened = () =>
      node.log.filter((line) => line.includes("connection opened to vm1")).length;
    const openedBefore = opened();
    // fio logs every completion with its unix-epoch time in ms: the I/Os can be
    // dated against the change without trusting when fio started.
    const running = fio(node.nbdUri("vm1"), "randwrite", 4, [
      `--write_lat_log=${log}`,
      "--log_unix_epoch=1",
    ]);
    // fio connects twice: once to learn the size, then for the I/O; 1.2 s into that, the change.
    while (opened() < openedBefore + 2) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const changeStartMs = Date.now();
    const changed = await send(node, "PATCH", "/v1/volumes/vm1/qos", '{"iops": 1000}', 200);
    const changedMs = Date.now();
    assert.deepEqual(changed.qos, { iops: 1000 });
    await running;
    const times = (await Deno.readTextFile(`${log}_clat.1.log`)).trim().split("\n")
      .map((line) => Number(line.split(",")[0]));
    const rate = (fromMs: number, toMs: number) => {
      assert.ok(toMs - fromMs >= 500, `a window of ${toMs - fromMs} ms is too short to measure`);
      const count = times.filter((t) => t > fromMs && t <= toMs).length;
      return count / ((toMs - fromMs) / 1000);
    };
    // Windows of one to two seconds of completions: the burst (0.1 s at the rate)
    // and a stall of this shared machine (completions admitted before it land
    // after it) move such a count by up to a tenth, so these bands are 15%
    // wide; the 3-second figure of the test above is held to 450-550.
    // Before: past the first burst, until the change was asked.
    const before = rate(times[0] + 200, changeStartMs);
    assert.ok(before >= 425 && before <= 575, `before the change: ${before} IOPS`);
    const after = rate(changedMs + 1000, times[times.length - 1]);
    assert.ok(after >= 850 && after <= 1150, `a second after the change: ${after} IOPS`);
  });
});

Deno.test("bad limits get a clear 400 and change nothing", async () => {
  await withNode(async ({ node }) => {
    const bad: [string, RegExp][] = [
      ['{"iops": -1}', /iops must be a positive integer/],
      ['{"iops": 0}', /iops must be a positive integer/],
      ['{"iops": "500"}', /iops must be a positive integer/],
      ['{"bps": 2.5}', /bps must be a positive integer/],
      ['{"iops": 1e12}', /iops of 1000000000000 is over its maximum/],
      ['{"bpsWrite": 1e18}', /bpsWrite of .* is over its maximum/],
      ['{"iopsBurst": 10}', /iopsBurst needs iops/],
      ['{"iopsTotal": 10}', /unknown limit "iopsTotal"/],
      ["[500]", /not a JSON object/],
      ["fast", /not JSON/],
    ];
    for (const [qos, message] of bad) {
      const created = await send(
        node,
        "POST",
        "/v1/volumes",
        `{"name":"x","size":4096,"qos":${qos}}`,
        400,
      );
      // In a create's body, a non-object qos is still JSON: it is the limits that are wrong.
      assert.match(created.error, qos === "[500]" ? /expected an object/ : message, qos);
    }
    assert.equal((await node.fetch("/v1/volumes/x")).status, 404, "no volume was created");

    await api(node, "/v1/volumes", { name: "vm1", size: GiB, qos: { iops: 500, bps: 1048576 } });
    for (const method of ["PUT", "PATCH"]) {
      for (const [qos, message] of bad) {
        const refused = await send(node, method, "/v1/volumes/vm1/qos", qos, 400);
        assert.match(refused.error, message, `${method} ${qos}`);
      }
    }
    assert.deepEqual((await info(node, "vm1")).qos, { iops: 500, bps: 1048576 });
    await send(node, "PUT", "/v1/volumes/nosuch/qos", '{"iops": 5}', 404);
  });
});

Deno.test("limits set by the CLI show in the volume's info and survive a node restart", async () => {
  await withNode(async (setup) => {
    const created = await atoll(setup.node, [
      "volume",
      "create",
      "vm1",
      "--size",
      "1G",
      "--iops",
      "500:100",
      "--bps-write",
      "64M",
    ]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /I\/O limits: iops 500 \(burst 100\), bps-write 64\.0 MiB\/s/);
    await qemuIo(setup.node.nbdUri("vm1"), [`write -P 1 0 ${regionBytes}`, "flush"]);
    const changed = await atoll(setup.node, [
      "volume",
      "qos",
      "vm1",
      "--bps-write",
      "off",
      "--bps",
      "1G:2G",
    ]);
    assert.equal(changed.code, 0, changed.stderr);
    const expected = { iops: 500, bps: GiB, iopsBurst: 100, bpsBurst: 2 * GiB };
    assert.deepEqual((await info(setup.node, "vm1")).qos, expected);
    const usage = await atoll(setup.node, ["volume", "qos", "vm1", "--iops=-5"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--iops takes a whole number of I\/Os/);
    const refused = await atoll(setup.node, ["volume", "qos", "vm1", "--iops", "99999999999"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /iops of 99999999999 is over its maximum/);

    await setup.node.stop();
    setup.node = await startNode({ data: setup.node.data });
    assert.deepEqual((await info(setup.node, "vm1")).qos, expected, "the record kept them");
    const shown = await atoll(setup.node, ["volume", "qos", "vm1"]);
    assert.match(
      shown.stdout,
      /I\/O limits: iops 500 \(burst 100\), bps 1\.0 GiB\/s \(burst 2\.0 GiB\)/,
    );
    const [job] = await fio(setup.node.nbdUri("vm1"), "randwrite", 3);
    assert.ok(job.iops >= iopsLow && job.iops <= iopsHigh, `after the restart: ${job.iops} IOPS`);
    const cleared = await atoll(setup.node, ["volume", "qos", "vm1", "--clear", "--json"]);
    assert.deepEqual(JSON.parse(cleared.stdout).qos, {});
  });
});

Deno.test("in a cluster the limits follow the volume when its write lease moves", async () => {
  // Limits well below what a 3-node cluster of processes on this machine writes
  // (160 to 500 random 4 KiB IOPS measured at QD16, varying with the load), at
  // QD32, so that the limit is what binds.
  const cluster = await startCluster(3);
  try {
    const [one, two] = cluster.nodes;
    await api(one, "/v1/volumes", { name: "vm1", size: GiB, qos: { iops: 500 } });
    await qemuIo(one.nbdUri("vm1"), ["write -P 1 0 16M", "flush"]); // the lease comes to one
    // Another member refuses while a live holder may be writing (as for a resize).
    const refused = await send(two, "PATCH", "/v1/volumes/vm1/qos", '{"iops": 50}', 409);
    assert.match(refused.error, /holds its write lease/);
    await send(one, "PATCH", "/v1/volumes/vm1/qos", '{"iops": 50}', 200);

    // The VM moves to two: its first write takes the lease, and the limits with it.
    await qemuIo(two.nbdUri("vm1"), ["write -P 2 0 4k", "flush"]);
    const [atTwo] = await fio(two.nbdUri("vm1"), "randwrite", 3);
    assert.ok(atTwo.iops >= 45 && atTwo.iops <= 55, `at the new holder: ${atTwo.iops} IOPS`);
    await send(two, "PATCH", "/v1/volumes/vm1/qos", '{"iops": 25}', 200);
    assert.deepEqual((await info(one, "vm1")).qos, { iops: 25 }, "every member reads them");
    await qemuIo(one.nbdUri("vm1"), ["write -P 3 0 4k", "flush"]); // and back
    const [back] = await fio(one.nbdUri("vm1"), "randwrite", 3);
    assert.ok(back.iops >= 22.5 && back.iops <= 27.5, `back at the first node: ${back.iops} IOPS`);
  } finally {
    await cluster.stop();
  }
});
