/**
 * Goal: several nodes on one Ceph pool serve the same volumes: what one wrote
 * and flushed, another reads identically; the write lease moves with the first
 * write through another node; the old holder's writes then fail with EIO and
 * never land, whether it let go when asked or was fenced by force (blocklisted)
 * because it did not answer. Method: real node processes on the test Ceph
 * (tests/_rados.ts), sharing one RADOS namespace; libnbd clients held open
 * across the move; the objects read back with `rados get`, not through Atoll.
 */
import assert from "node:assert/strict";
import { createVolume, MiB, nbdPython, uploadImage, volumeBytes } from "./_nbd.ts";
import type { TestNode } from "./_node.ts";
import { radosNodePool, startRadosNodes, testCeph } from "./_rados.ts";
import { assertSameBytes, patternBytes } from "./_files.ts";

const volumeBytesTotal = 16 * MiB;
async function leaseOf(node: TestNode, name: string) {
  const info = await (await node.fetch(`/v1/volumes/${name}`)).json();
  return info as { heldHere: boolean; lease?: { holder: string | null; epoch: number } };
}

/** Every volume object of `namespace` as RADOS holds it, read with `rados get`. */
async function storedObjects(namespace: string): Promise<Map<string, Uint8Array>> {
  const ceph = await testCeph();
  const pool = await radosNodePool();
  const where = ["-p", pool, "-N", `${namespace}-objects`];
  const names = (await ceph.rados([...where, "ls"])).split("\n").filter((line) => line !== "");
  const objects = new Map<string, Uint8Array>();
  const dir = await Deno.makeTempDir();
  for (const name of names) {
    await ceph.rados([...where, "get", name, `${dir}/${name}`]);
    objects.set(name, await Deno.readFile(`${dir}/${name}`));
  }
  await Deno.remove(dir, { recursive: true });
  return objects;
}

/** True when some 4 KiB-aligned run of `bytes` is all `value`. */
function holdsPattern(bytes: Uint8Array, value: number): boolean {
  for (let at = 0; at + 4096 <= bytes.length; at += 4096) {
    if (bytes.subarray(at, at + 4096).every((byte) => byte === value)) return true;
  }
  return false;
}

const attempt = `
def attempt(fn):
    try:
        fn(); return 'ok'
    except nbd.Error as e:
        return 'EIO' if 'EIO' in str(e) else str(e)
`;

Deno.test("two nodes on one pool: writes through one read identically through the other; the lease moves and fences", async () => {
  const { nodes: [one, two], namespace, stop } = await startRadosNodes(2);
  try {
    const image = patternBytes(8 * MiB, 5);
    await uploadImage(one, "base", image);
    await createVolume(one, "vm1", { image: "base", size: volumeBytesTotal });
    const out = await nbdPython(
      attempt + `
a = nbd.NBD(); a.connect_uri(sys.argv[1])
b = nbd.NBD(); b.connect_uri(sys.argv[2])
b2 = nbd.NBD(); b2.connect_uri(sys.argv[2])
out = {}
pa = b'\\x11' * 65536
a.pwrite(pa, 0); a.pwrite(pa, 9 * 1024 * 1024); a.flush()
out['b_reads_a'] = b.pread(65536, 0) == pa and b.pread(65536, 9 * 1024 * 1024) == pa
b.pwrite(b'\\x22' * 4096, 8192)
b2.pwrite(b'\\x23' * 4096, 16384)
out['b_reads_b2'] = b.pread(4096, 16384) == b'\\x23' * 4096
out['a_write'] = attempt(lambda: a.pwrite(b'\\x33' * 4096, 4 * 1024 * 1024))
out['a_zero'] = attempt(lambda: a.zero(4096, 32768))
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
      a_flush: "ok",
      a_disc: "ok",
      b_flush: "ok",
    });
    const expected = new Uint8Array(volumeBytesTotal);
    expected.set(image);
    expected.fill(0x11, 0, 65536);
    expected.fill(0x11, 9 * MiB, 9 * MiB + 65536);
    expected.fill(0x22, 8192, 12288);
    expected.fill(0x23, 16384, 20480);
    assertSameBytes(await volumeBytes(one, "vm1"), expected, "the volume through node 1");
    assertSameBytes(await volumeBytes(two, "vm1"), expected, "the volume through node 2");
    assert.equal((await leaseOf(two, "vm1")).heldHere, true);
    assert.equal((await leaseOf(two, "vm1")).lease?.epoch, 2);
    assert.equal((await leaseOf(one, "vm1")).heldHere, false);
    for (const [name, bytes] of await storedObjects(namespace)) {
      assert.equal(holdsPattern(bytes, 0x33), false, `object ${name} holds the fenced write`);
    }

    // Moves back and forth, each by a new connection writing its own pattern.
    const moves = await nbdPython(
      `
import time
size = int(sys.argv[3]); count = int(sys.argv[4])
c = nbd.NBD(); c.connect_uri(sys.argv[1]); model = bytearray(c.pread(size, 0)); c.shutdown()
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
print(json.dumps({'equal': equal, 'p50': latency[len(latency) // 2] * 1000}))
`,
      [one.nbdUri("vm1"), two.nbdUri("vm1"), String(volumeBytesTotal), "20"],
    ) as { equal: boolean; p50: number };
    console.log(`20 moves: first write on the new node p50 ${moves.p50.toFixed(1)} ms`);
    assert.equal(moves.equal, true, "the volume equals the sequential model");
    assert.equal((await leaseOf(one, "vm1")).lease?.epoch, 22);
  } finally {
    await stop();
  }
});

Deno.test("a holder that does not answer is blocklisted: its writes get EIO and never land", async () => {
  const { nodes: [one, two], namespace, stop } = await startRadosNodes(2);
  let stopped = false;
  try {
    await createVolume(one, "vm1", { size: volumeBytesTotal });
    const held = nbdHeld(one.nbdUri("vm1"));
    const first = await held.next();
    assert.equal(first, "written");
    // Node 1 stops answering (as a hung host would); node 2 takes the lease by force.
    Deno.kill(one.process.pid, "SIGSTOP");
    stopped = true;
    const out = await nbdPython(
      attempt + `
b = nbd.NBD(); b.connect_uri(sys.argv[1])
out = {'b_write': attempt(lambda: b.pwrite(b'\\x22' * 4096, 0)), 'b_flush': attempt(lambda: b.flush())}
out['b_reads'] = b.pread(4096, 0) == b'\\x22' * 4096 and b.pread(4096, 65536) == b'\\x11' * 4096
b.shutdown()
print(json.dumps(out))
`,
      [two.nbdUri("vm1")],
    );
    assert.deepEqual(out, { b_write: "ok", b_flush: "ok", b_reads: true });
    Deno.kill(one.process.pid, "SIGCONT");
    stopped = false;
    // The connection node 1 kept open writes again: refused by the OSDs, EIO.
    assert.equal(await held.next(), "EIO");
    // And its FLUSH: the lease was taken from node 1 by force while it was open.
    assert.equal(await held.next("flush"), "EIO");
    await held.close();
    for (const [name, bytes] of await storedObjects(namespace)) {
      assert.equal(holdsPattern(bytes, 0x33), false, `object ${name} holds the fenced write`);
    }
    const expected = new Uint8Array(volumeBytesTotal);
    expected.fill(0x11, 0, MiB);
    expected.fill(0x22, 0, 4096);
    assertSameBytes(await volumeBytes(two, "vm1"), expected, "the volume through node 2");
    assert.match(one.log.join("\n"), /blocklisted/);
    // Node 1, a new client now, takes the lease back through a new connection.
    const back = await nbdPython(
      attempt + `
a = nbd.NBD(); a.connect_uri(sys.argv[1])
out = attempt(lambda: a.pwrite(b'\\x44' * 4096, 8192)); a.flush(); a.shutdown()
print(json.dumps(out))
`,
      [one.nbdUri("vm1")],
    );
    assert.equal(back, "ok");
    assert.equal((await leaseOf(one, "vm1")).heldHere, true);
  } finally {
    if (stopped) Deno.kill(one.process.pid, "SIGCONT");
    await stop();
  }
});

/**
 * A libnbd client that writes 1 MiB of 0x11 and flushes ("written"), then on
 * each next() writes 4 KiB of 0x33 at 1 MiB - 4 KiB (or with "flush", flushes)
 * and reports "ok" or "EIO".
 */
function nbdHeld(uri: string) {
  const child = new Deno.Command("/usr/bin/python3", {
    args: [
      "-c",
      `import sys, nbd
${attempt}
a = nbd.NBD(); a.connect_uri(sys.argv[1])
a.pwrite(b'\\x11' * 1048576, 0); a.flush()
print('written', flush=True)
for line in sys.stdin:
    if line.strip() == 'flush':
        print(attempt(lambda: a.flush()), flush=True)
    else:
        print(attempt(lambda: a.pwrite(b'\\x33' * 4096, 1048576 - 4096)), flush=True)
`,
      uri,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const writer = child.stdin.getWriter();
  let buffered = "";
  let asked = false;
  return {
    async next(what: "write" | "flush" = "write"): Promise<string> {
      if (asked) await writer.write(new TextEncoder().encode(`${what}\n`));
      asked = true;
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) throw new Error("the libnbd client exited");
        buffered += value;
      }
      const line = buffered.slice(0, buffered.indexOf("\n"));
      buffered = buffered.slice(buffered.indexOf("\n") + 1);
      return line;
    },
    async close() {
      await writer.close();
      await lines.cancel();
      await child.status;
    },
  };
}
