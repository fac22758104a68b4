/**
 * Goal: a FLUSH never reports durable what a holder acknowledged and then lost
 * with its lease: when the lease is taken from a node by force (it froze past
 * the dead grace, as a host paused or swapping does), every connection open
 * there fails FLUSH from then on, since the writes it acknowledged unflushed
 * (a copy-up's map above all) went with the node's instance. Writes flushed
 * before stay.
 * Method: three real node processes on loopback; a libnbd client (Python) on
 * node 1 writes and flushes, writes once more, and waits; node 1 is frozen
 * with SIGSTOP, node 2 takes the lease with a write once gossip says node 1 is
 * dead, node 1 resumes and hears it lost the lease, and the client then
 * flushes. A reader on node 3 checks the bytes.
 */
import assert from "node:assert/strict";
import { eventually, startCluster } from "./_cluster.ts";
import { createVolume, MiB, nbdPython, systemPython, volumeBytes } from "./_nbd.ts";
import type { TestNode } from "./_node.ts";

/** The lease as node `node` reports it. */
async function heldHere(node: TestNode, name: string): Promise<boolean> {
  const info = await (await node.fetch(`/v1/volumes/${name}`)).json();
  return (info as { heldHere: boolean }).heldHere;
}

Deno.test("a connection open when its node's lease was taken by force fails FLUSH", async () => {
  const cluster = await startCluster(3);
  const [one, two, three] = cluster.nodes;
  let frozen = false;
  try {
    await createVolume(one, "vm1", { size: 16 * MiB });
    const client = new Deno.Command(systemPython, {
      args: [
        "-c",
        `
import sys, nbd
a = nbd.NBD(); a.connect_uri(sys.argv[1])
a.pwrite(b'\\x11' * 65536, 0); a.flush()
a.pwrite(b'\\x12' * 4096, 8 << 20)
print('written', flush=True)
sys.stdin.readline()
try:
    a.flush(); print('flush ok', flush=True)
except nbd.Error as e:
    print('flush EIO' if 'EIO' in str(e) else str(e), flush=True)
`,
        one.nbdUri("vm1"),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    const readLine = async () => {
      while (!out.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) break;
        out += value;
      }
      const [line, ...rest] = out.split("\n");
      out = rest.join("\n");
      return line;
    };
    assert.equal(await readLine(), "written");

    // Node 1 freezes; node 2 takes the lease over once gossip declares node 1 dead.
    Deno.kill(one.process.pid, "SIGSTOP");
    frozen = true;
    await nbdPython(
      `b = nbd.NBD(); b.connect_uri(sys.argv[1])\nb.pwrite(b'\\x22' * 4096, 65536); b.flush()\nprint('1')`,
      [two.nbdUri("vm1")],
    );
    Deno.kill(one.process.pid, "SIGCONT");
    frozen = false;
    await eventually("node 1 knows it lost the lease", async () => !(await heldHere(one, "vm1")));

    // Its client flushes now: the unflushed write went with node 1's instance.
    const stdin = client.stdin.getWriter();
    await stdin.write(new TextEncoder().encode("go\n"));
    await stdin.close();
    assert.equal(await readLine(), "flush EIO");
    await client.status;
    const bytes = await volumeBytes(three, "vm1");
    assert.ok(bytes.subarray(0, 65536).every((byte) => byte === 0x11), "the flushed write stays");
    assert.ok(bytes.subarray(65536, 69632).every((byte) => byte === 0x22), "node 2's write");
  } finally {
    if (frozen) Deno.kill(one.process.pid, "SIGCONT");
    await cluster.stop();
  }
});
