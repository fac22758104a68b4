/**
 * Goal: one writer at a time per volume across nodes, no stale reads, and
 * fencing that holds: the write lease moves with the first write through
 * another node; connections open at the old holder are fenced for writes but
 * keep reads, FLUSH and DISC; a cut-off holder cannot change a byte; a dead
 * holder is taken over and every flushed write survives.
 * Method: real node processes on loopback with a cluster key; libnbd clients
 * (Python) on two nodes at once; a third path (HTTP, or another node) checks
 * the bytes. Partitions by `--fault-file` (the node drops all cluster traffic
 * while the file exists); deaths by SIGKILL.
 */
import assert from "node:assert/strict";
import { eventually, members, startCluster } from "./_cluster.ts";
import { api, createVolume, MiB, nbdPython, systemPython, volumeBytes } from "./_nbd.ts";
import { startNode, type TestNode } from "./_node.ts";
import { sha256Hex } from "../cluster/data/mod.ts";
import { assertSameBytes } from "./_files.ts";

const volumeBytesTotal = 16 * MiB;

/** Reads whole lines from a child's stdout (chunks may split or join lines). */
function lineReader(stream: ReadableStream<Uint8Array>): () => Promise<string | null> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return async () => {
    for (;;) {
      const newline = buffered.indexOf("\n");
      if (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) return buffered === "" ? null : buffered;
      buffered += value;
    }
  };
}

/**
 * Runs `script` with `c`, a libnbd handle connected to volume vm1 on `node`
 * (`args` are sys.argv[2:]); returns the JSON value it prints.
 */
function io(node: TestNode, script: string, args: string[] = []): Promise<unknown> {
  return nbdPython(`c = nbd.NBD(); c.connect_uri(sys.argv[1])\n${script}`, [
    node.nbdUri("vm1"),
    ...args,
  ]);
}

/** The lease as node `node` reports it. */
async function leaseOf(node: TestNode, name: string) {
  const info = await (await node.fetch(`/v1/volumes/${name}`)).json();
  return info as { lease?: { holder: string | null; epoch: number }; heldHere: boolean };
}

Deno.test("the lease moves with the first write; the old holder's connections are fenced", async () => {
  const cluster = await startCluster(2);
  const [one, two] = cluster.nodes;
  try {
    await createVolume(one, "vm1", { size: volumeBytesTotal });
    const out = await nbdPython(
      `
a = nbd.NBD(); a.connect_uri(sys.argv[1])
b = nbd.NBD(); b.connect_uri(sys.argv[2])
b2 = nbd.NBD(); b2.connect_uri(sys.argv[2])
out = {}
pa = b'\\x11' * 65536
a.pwrite(pa, 0); a.flush()
out['b_reads_a'] = b.pread(65536, 0) == pa
b.pwrite(b'\\x22' * 4096, 8192)
b2.pwrite(b'\\x23' * 4096, 16384)
out['b_reads_b2'] = b.pread(4096, 16384) == b'\\x23' * 4096
def attempt(fn):
    try:
        fn(); return 'ok'
    except nbd.Error as e:
        return 'EIO' if 'EIO' in str(e) else str(e)
out['a_write'] = attempt(lambda: a.pwrite(b'\\x33' * 4096, 0))
out['a_zero'] = attempt(lambda: a.zero(4096, 32768))
out['a_reads'] = a.pread(4096, 8192) == b'\\x22' * 4096
out['a_flush'] = attempt(lambda: a.flush())
out['a_disc'] = attempt(lambda: a.shutdown())
out['b_flush'] = attempt(lambda: b.flush())
print(json.dumps(out))
`,
      [one.nbdUri("vm1"), two.nbdUri("vm1")],
    );
    assert.deepEqual(out, {
      b_reads_a: true,
      b_reads_b2: true,
      a_write: "EIO",
      a_zero: "EIO",
      a_reads: true,
      a_flush: "ok",
      a_disc: "ok",
      b_flush: "ok",
    });
    const metrics = await (await one.fetch("/metrics")).text();
    assert.match(metrics, /^atoll_lease_released_total 1$/m);
    assert.match(metrics, /^atoll_lease_fenced_writes_total 2$/m, "A's write and zero");
    const expected = new Uint8Array(volumeBytesTotal);
    expected.fill(0x11, 0, 65536);
    expected.fill(0x22, 8192, 12288);
    expected.fill(0x23, 16384, 20480);
    // Through HTTP on the old holder: the fenced writes never landed.
    assertSameBytes(await volumeBytes(one, "vm1"), expected, "the volume through node 1");
    const lease = await leaseOf(two, "vm1");
    assert.equal(lease.heldHere, true);
    assert.equal(lease.lease?.epoch, 2);
    assert.equal((await leaseOf(one, "vm1")).heldHere, false);

    // 200 moves, each by a new connection writing its own pattern, alternating nodes.
    const moves = await nbdPython(
      `
import time
size = int(sys.argv[3]); count = int(sys.argv[4])
model = bytearray(size)
c = nbd.NBD(); c.connect_uri(sys.argv[1]); model[:] = c.pread(size, 0); c.shutdown()
latency = []
for i in range(count):
    h = nbd.NBD(); h.connect_uri(sys.argv[1 + i % 2])
    offset = (i * 7919 * 512) % (size - 8192)
    data = bytes([i % 251 + 1]) * 8192
    started = time.monotonic(); h.pwrite(data, offset); latency.append(time.monotonic() - started)
    h.flush(); h.shutdown()
    model[offset:offset + 8192] = data
c = nbd.NBD(); c.connect_uri(sys.argv[2])
equal = c.pread(size, 0) == bytes(model)
latency.sort()
print(json.dumps({'equal': equal, 'p50': latency[len(latency) // 2] * 1000,
                  'p99': latency[int(len(latency) * 0.99)] * 1000}))
`,
      [one.nbdUri("vm1"), two.nbdUri("vm1"), String(volumeBytesTotal), "200"],
    ) as { equal: boolean; p50: number; p99: number };
    console.log(
      `200 moves: first write on the new node p50 ${moves.p50.toFixed(1)} ms, p99 ${
        moves.p99.toFixed(1)
      } ms`,
    );
    assert.equal(moves.equal, true, "the volume equals the sequential model");
    assert.equal((await leaseOf(one, "vm1")).lease?.epoch, 202);
  } finally {
    await cluster.stop();
  }
});

Deno.test("a holder cut off from the cluster cannot change a byte once another node took the lease", async () => {
  const cluster = await startCluster(3, (i, dir) => ["--fault-file", `${dir}/isolate-${i}`]);
  const [one, two, three] = cluster.nodes;
  try {
    await createVolume(one, "vm1", { size: volumeBytesTotal });
    // A writes through node 1 and keeps its connection; then node 1 is cut off.
    const writer = new Deno.Command(systemPython, {
      args: [
        "-c",
        `
import sys, nbd
a = nbd.NBD(); a.connect_uri(sys.argv[1])
a.pwrite(b'\\x11' * 65536, 0); a.pwrite(b'\\x12' * 65536, 4 << 20); a.flush()
print('flushed', flush=True)
sys.stdin.readline()
results = []
for i in range(16):
    try:
        a.pwrite(bytes([0x40 + i]) * 4096, i * 4096 + (4 << 20 if i >= 8 else 0))
        results.append('ok')
    except nbd.Error as e:
        results.append('EIO' if 'EIO' in str(e) else str(e))
try:
    a.flush(); results.append('flush ok')
except nbd.Error as e:
    results.append('flush EIO' if 'EIO' in str(e) else str(e))
print(' '.join(results), flush=True)
`,
        one.nbdUri("vm1"),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const readLine = lineReader(writer.stdout);
    assert.equal(await readLine(), "flushed");
    await Deno.writeTextFile(`${cluster.dir}/isolate-0`, "");
    await eventually(
      "node 1 cut off",
      () => Promise.resolve(one.log.some((line) => line.includes("isolated from the cluster"))),
    );
    // Node 2 takes the lease (after gossip declares node 1 dead) and writes.
    const out = await nbdPython(
      `
import time
b = nbd.NBD(); b.connect_uri(sys.argv[1])
started = time.monotonic()
b.pwrite(b'\\x22' * 4096, 8192); b.flush()
print(json.dumps({'takeover_ms': (time.monotonic() - started) * 1000}))
`,
      [two.nbdUri("vm1")],
    ) as { takeover_ms: number };
    console.log(`takeover from a cut-off holder: ${Math.round(out.takeover_ms)} ms`);
    // The cut-off holder's client writes again: every write fails, nothing lands.
    const stdin = writer.stdin.getWriter();
    await stdin.write(new TextEncoder().encode("go\n"));
    await stdin.close();
    const verdict = await readLine() ?? "(the writer printed nothing)";
    // Every write fails; its FLUSH may succeed (nothing it acknowledged is pending).
    assert.deepEqual(verdict.trim().split(" ").slice(0, 16), Array(16).fill("EIO"), verdict);
    await writer.status;
    // Heal the partition; let node 1 rejoin and healing run; read through node 3.
    await Deno.remove(`${cluster.dir}/isolate-0`);
    await eventually("node 1 alive again everywhere", async () => {
      const views = await Promise.all(cluster.nodes.map(members));
      return views.every((view) => view.every((member) => member.state === "alive"));
    });
    const expected = new Uint8Array(volumeBytesTotal);
    expected.fill(0x11, 0, 65536);
    expected.fill(0x12, 4 * MiB, 4 * MiB + 65536);
    expected.fill(0x22, 8192, 12288);
    for (const node of [three, one, two]) {
      assertSameBytes(await volumeBytes(node, "vm1"), expected, `read through ${node.url}`);
    }
    const check = await io(
      three,
      "import hashlib\nprint(json.dumps(hashlib.sha256(c.pread(int(sys.argv[2]), 0)).hexdigest()))",
      [String(volumeBytesTotal)],
    );
    assert.equal(check, sha256Hex(expected), "NBD read through node 3");
  } finally {
    await cluster.stop();
  }
});

Deno.test("a killed holder is taken over in bounded time and keeps every flushed write", async () => {
  const cluster = await startCluster(3);
  const [one, two] = cluster.nodes;
  try {
    await createVolume(one, "vm1", { size: volumeBytesTotal });
    const writer = new Deno.Command(systemPython, {
      args: [
        "-c",
        `
import sys, nbd
a = nbd.NBD(); a.connect_uri(sys.argv[1])
i = 0
try:
    while True:
        a.pwrite(bytes([i % 250 + 1]) * 4096, (i * 4096) % (8 << 20))
        a.flush()
        print(i, flush=True)
        i += 1
except Exception:
    pass
`,
        one.nbdUri("vm1"),
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const readLine = lineReader(writer.stdout);
    const flushed: number[] = [];
    while (flushed.length < 40) {
      const line = await readLine();
      assert.ok(line !== null, "the writer stopped before the kill");
      flushed.push(Number(line));
    }
    await one.kill9();
    for (let line = await readLine(); line !== null; line = await readLine()) {
      flushed.push(Number(line));
    }
    await writer.status;
    const last = flushed.at(-1)!;
    assert.ok(last >= 39);
    const out = await nbdPython(
      `
import time
b = nbd.NBD(); b.connect_uri(sys.argv[1])
started = time.monotonic()
b.pwrite(b'\\xee' * 4096, (8 << 20) + 4096); b.flush()
took = (time.monotonic() - started) * 1000
data = b.pread(8 << 20, 0)
print(json.dumps({'takeover_ms': took, 'data': data[::4096].hex()}))
`,
      [two.nbdUri("vm1")],
    ) as { takeover_ms: number; data: string };
    console.log(`takeover after kill -9 of the holder: ${Math.round(out.takeover_ms)} ms`);
    // Each 4 KiB page i holds the last write flushed there (pages wrap at 8 MiB).
    const pages = new Map<number, number>();
    for (let i = 0; i <= last; i++) pages.set(i % 2048, i % 250 + 1);
    for (const [page, byte] of pages) {
      assert.equal(parseInt(out.data.slice(page * 2, page * 2 + 2), 16), byte, `page ${page}`);
    }
    const lease = await leaseOf(two, "vm1");
    assert.equal(lease.heldHere, true);
  } finally {
    await cluster.stop();
  }
});

/** Runs the atoll CLI; returns stdout, asserting exit 0. */
async function atoll(args: string[]): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  assert.equal(output.code, 0, `atoll ${args.join(" ")}: ${text.decode(output.stderr)}`);
  return text.decode(output.stdout);
}

Deno.test("an operator moves and breaks a lease with the CLI and HTTP", async () => {
  const cluster = await startCluster(2);
  const [one, two] = cluster.nodes;
  try {
    await createVolume(one, "vm1", { size: volumeBytesTotal });
    const write = (node: TestNode, byte: number) =>
      io(
        node,
        `
try:
    c.pwrite(bytes([int(sys.argv[2])]) * 4096, 0); c.flush(); print(json.dumps('ok'))
except nbd.Error as e:
    print(json.dumps('EIO' if 'EIO' in str(e) else str(e)))
`,
        [String(byte)],
      );
    assert.equal(await write(one, 1), "ok");
    assert.equal((await leaseOf(one, "vm1")).lease?.epoch, 1);

    // A pre-migrate hook moves the lease to node 2 before any write there.
    const moved = await atoll(["volume", "lease", "vm1", "--node", two.url]);
    assert.match(moved, /lease:\s+\S+ \(epoch 2\), this node/);
    assert.equal((await leaseOf(one, "vm1")).heldHere, false);
    const atTwo = await leaseOf(two, "vm1");
    assert.equal(atTwo.heldHere, true);

    // Breaking frees it: nobody holds it; node 2's next write finds it fenced,
    // and a new connection takes the lease again.
    const broken = JSON.parse(
      await atoll(["volume", "lease", "vm1", "--break", "--json", "--node", one.url]),
    );
    assert.deepEqual(broken.lease, { holder: null, epoch: 3 });
    assert.equal(await write(two, 2), "EIO");
    assert.equal(await write(two, 3), "ok");
    const retaken = await leaseOf(two, "vm1");
    assert.equal(retaken.heldHere, true);
    assert.equal(retaken.lease?.epoch, 4);
    const bytes = await volumeBytes(one, "vm1");
    assert.deepEqual([...bytes.subarray(0, 2)], [3, 3], "the broken holder's write never landed");

    // A snapshot through a node that does not hold the lease would fence the VM: refused.
    const elsewhere = await one.fetch("/v1/volumes/vm1/snapshots", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "s1" }),
    });
    assert.equal(elsewhere.status, 409);
    assert.match((await elsewhere.json()).error, /holds its write lease/);
    await api(two, "/v1/volumes/vm1/snapshots", { name: "s1" });
    assert.equal((await leaseOf(two, "vm1")).heldHere, true, "the snapshot kept the lease");

    const status = await atoll(["cluster", "status", "--node", one.url]);
    assert.match(status, /alive/);
    assert.match(status, /replicas:\s+3/);
    assert.match(status, /healing:\s+\d+ passes/);

    const bad = await one.fetch("/v1/volumes/vm1/lease", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ action: "steal" }),
    });
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
  } finally {
    await cluster.stop();
  }
});

Deno.test("a killed holder restarted on its data directory rejoins, keeps its flushed writes, writes again", async () => {
  const cluster = await startCluster(3);
  const [one, two, three] = cluster.nodes;
  try {
    await createVolume(one, "vm1", { size: volumeBytesTotal });
    await io(three, "c.pwrite(b'\\x31' * 65536, 0); c.flush(); print(json.dumps(1))");
    assert.equal((await leaseOf(three, "vm1")).heldHere, true);
    await three.kill9();
    // Restarted on the same data directory (a new port: the id is what counts).
    const restarted = await startNode({
      data: three.data,
      args: cluster.args(["--join", one.gossip!]),
    });
    cluster.nodes[2] = restarted;
    await eventually("3 alive members everywhere", async () => {
      const views = await Promise.all(cluster.nodes.map(members));
      return views.every((view) => view.filter((member) => member.state === "alive").length === 3);
    });
    assert.equal(
      await io(one, "print(json.dumps(c.pread(65536, 0) == b'\\x31' * 65536))"),
      true,
      "the flushed writes of the killed holder",
    );
    await io(restarted, "c.pwrite(b'\\x32' * 4096, 0); c.flush(); print(json.dumps(1))");
    assert.equal(await io(two, "print(json.dumps(c.pread(2, 0).hex()))"), "3232");
    const lease = await leaseOf(restarted, "vm1");
    assert.equal(lease.heldHere, true);
    assert.equal(lease.lease?.epoch, 2);
  } finally {
    await cluster.stop();
  }
});

Deno.test("a holder stopped with SIGTERM hands over: its acknowledged writes, even unflushed, stay", async () => {
  const cluster = await startCluster(3);
  const [one, two] = cluster.nodes;
  try {
    await createVolume(one, "vm1", { size: volumeBytesTotal });
    // Acknowledged but never flushed by the client.
    await io(one, "c.pwrite(b'\\x51' * 65536, 0); print(json.dumps(1))");
    const status = await one.stop();
    assert.equal(status.code, 0);
    const out = await io(
      two,
      `
import time
started = time.monotonic()
c.pwrite(b'\\x52' * 4096, 0); c.flush()
took = (time.monotonic() - started) * 1000
print(json.dumps({'took_ms': took, 'head': c.pread(8192, 0).hex()}))
`,
    ) as { took_ms: number; head: string };
    console.log(`lease taken from a node that left: ${Math.round(out.took_ms)} ms`);
    assert.equal(out.head, "52".repeat(4096) + "51".repeat(4096));
  } finally {
    await cluster.stop();
  }
});
