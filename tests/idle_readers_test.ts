/**
 * Goal: reads of a volume nobody holds the write lease of (a fresh clone a VM
 * boots from) are served from a reader the node keeps, without a record read
 * each, and never go stale: a write through another node is seen at once by
 * the next read; a reader node that cannot be told holds the writer back until
 * its reader ran out, so it never serves the old bytes after the write.
 * Method: three real node processes on loopback; libnbd clients (Python) on
 * two nodes; a reader node cut off by `--fault-file`; the count of reads served
 * from a kept reader from /metrics.
 */
import assert from "node:assert/strict";
import { eventually, startCluster } from "./_cluster.ts";
import { api, MiB, nbdPython, systemPython } from "./_nbd.ts";
import type { TestNode } from "./_node.ts";

async function idleReads(node: TestNode): Promise<number> {
  const text = await (await node.fetch("/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith("atoll_lease_idle_reads_total"));
  assert.ok(line !== undefined, "atoll_lease_idle_reads_total in /metrics");
  return Number(line.split(" ").at(-1));
}

/** Reads 4 KiB at 0 through `node`, `times` times on one connection; the distinct first bytes seen. */
async function firstBytes(node: TestNode, times: number): Promise<number[]> {
  return await nbdPython(
    `
c = nbd.NBD(); c.connect_uri(sys.argv[1])
seen = sorted({c.pread(4096, 0)[0] for i in range(int(sys.argv[2]))})
print(json.dumps(seen))
`,
    [node.nbdUri("vm1"), String(times)],
  ) as number[];
}

async function writeAndFlush(node: TestNode, byte: number): Promise<void> {
  await nbdPython(
    `
c = nbd.NBD(); c.connect_uri(sys.argv[1])
c.pwrite(bytes([int(sys.argv[2])]) * 4096, 0); c.flush(); c.shutdown()
print(json.dumps(True))
`,
    [node.nbdUri("vm1"), String(byte)],
  );
}

Deno.test("reads of a volume nobody holds are served from a kept reader; a write elsewhere is seen at once", async () => {
  const cluster = await startCluster(3);
  const [, two, three] = cluster.nodes;
  try {
    await api(two, "/v1/volumes", { name: "vm1", size: 16 * MiB });
    // The first read registers node 3 as a reader in the background (it does
    // not wait for that); once the registration is in, reads come from the
    // kept reader.
    await eventually("node 3 keeps a reader", async () => {
      const start = await idleReads(three);
      assert.deepEqual(await firstBytes(three, 1), [0]);
      return await idleReads(three) > start;
    });
    const before = await idleReads(three);
    assert.deepEqual(await firstBytes(three, 50), [0]);
    const served = await idleReads(three) - before;
    assert.ok(served >= 45, `reads served from the kept reader: ${served} of 50`);
    // Node 2 writes: the lease moves there, node 3 is told to drop its reader.
    await writeAndFlush(two, 0x5a);
    assert.deepEqual(await firstBytes(three, 5), [0x5a], "read through node 3 after the write");
    await writeAndFlush(two, 0x6b);
    assert.deepEqual(await firstBytes(three, 5), [0x6b], "forwarded to the holder now");
  } finally {
    await cluster.stop();
  }
});

Deno.test("a reader node that cannot be told holds the writer back until its reader ran out", async () => {
  const cluster = await startCluster(3, (i, dir) => ["--fault-file", `${dir}/isolate-${i}`]);
  const [, two, three] = cluster.nodes;
  try {
    await api(two, "/v1/volumes", { name: "vm1", size: 16 * MiB });
    // A client of node 3 reads all along (its reader stays fresh); after "mark"
    // it records what it reads; after "stop" it prints that.
    const reader = new Deno.Command(systemPython, {
      args: ["-c", readLoop, three.nbdUri("vm1")],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = reader.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const stdin = reader.stdin.getWriter();
    assert.match((await lines.read()).value ?? "", /ready/);
    // Node 3 is cut off with its reader: nobody can tell it the lease moved.
    await Deno.writeTextFile(`${cluster.dir}/isolate-2`, "");
    await eventually(
      "node 3 cut off",
      () => Promise.resolve(three.log.some((line) => line.includes("isolated from the cluster"))),
    );
    await writeAndFlush(two, 0x7c);
    await stdin.write(new TextEncoder().encode("mark\n"));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await stdin.write(new TextEncoder().encode("stop\n"));
    await stdin.close();
    let out = "";
    for (;;) {
      const { value, done } = await lines.read();
      if (done) break;
      out += value;
    }
    await reader.status;
    // After the write was acknowledged, node 3 fails reads (it cannot reach the
    // record) or serves the new bytes: never the zeros it kept.
    const after = JSON.parse(out) as (number | string)[];
    assert.ok(after.length > 0, "reads after the write");
    assert.ok(!after.includes(0), `node 3 served the bytes from before the write: ${out}`);
    await Deno.remove(`${cluster.dir}/isolate-2`);
    await eventually("node 3 reads the write", async () => {
      try {
        return (await firstBytes(three, 1))[0] === 0x7c;
      } catch {
        return false;
      }
    });
  } finally {
    await cluster.stop();
  }
});

/** Reads 4 KiB at 0 every 20 ms; see the test above. */
const readLoop = `
import sys, json, time, select, nbd
c = nbd.NBD(); c.connect_uri(sys.argv[1])
for i in range(10): c.pread(4096, 0)
print('ready', flush=True)
marked, after = False, []
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 0.02)
    if ready:
        line = sys.stdin.readline().strip()
        if line == 'mark': marked = True
        else: break
    try:
        value = c.pread(4096, 0)[0]
    except nbd.Error as e:
        value = 'EIO' if 'EIO' in str(e) else str(e)
    if marked: after.append(value)
print(json.dumps(after), flush=True)
`;
