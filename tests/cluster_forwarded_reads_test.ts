/**
 * Goal: reads through a node that does not hold a volume's lease, many in
 * flight at once, each return the bytes the holder acknowledged, every one
 * served by the holder; a write through the holder between two passes is seen
 * by every read of the second.
 * Method: three `atoll serve` processes at R=2 (the forwarding node holds only
 * some of the objects); a libnbd client writes a pattern through node 1 (the
 * holder) and keeps its connection open; another reads 4 KiB pieces all over
 * the volume through node 2, 32 requests sent at once (aio_pread), comparing
 * every byte; node 2's /metrics counts the reads forwarded.
 */
import assert from "node:assert/strict";
import { startCluster } from "./_cluster.ts";
import { createVolume, MiB, systemPython } from "./_nbd.ts";
import { scrape } from "./_metrics.ts";
import type { TestNode } from "./_node.ts";

const size = 32 * MiB;

/**
 * Python (libnbd): writes the pattern of `round` over the volume at node 1,
 * flushes, prints "written", then waits for a line before the next round; the
 * connection stays open (the holder's client).
 */
const writer = `
import sys, nbd
size, piece = ${size}, 1 << 20
def pattern(r, i): return bytes(((i * 13 + j + r * 101) % 251) or 1 for j in range(256)) * (piece // 256)
c = nbd.NBD(); c.connect_uri(sys.argv[1])
for r in range(2):
    for i in range(size // piece): c.pwrite(pattern(r, i), i * piece)
    c.flush()
    print("written", flush=True)
    sys.stdin.readline()
`;

/**
 * Python (libnbd): reads 4 KiB at 600 offsets through `uri`, 32 sent at once
 * each time the last 32 came back, and checks round `r`'s pattern.
 */
const reader = `
import sys, json, nbd, random
size, piece, r = ${size}, 1 << 20, int(sys.argv[2])
def expected(off, n):
    i, j = off // piece, off % piece
    return bytes(((i * 13 + (j + k) % 256 + r * 101) % 251) or 1 for k in range(n))
c = nbd.NBD(); c.connect_uri(sys.argv[1])
rng = random.Random(7 + r)
offsets = [rng.randrange(size // 4096) * 4096 for _ in range(600)]
pending, bad, done = {}, 0, 0
while offsets:
    for _ in range(min(32, len(offsets))):
        off = offsets.pop(); buf = nbd.Buffer(4096)
        pending[c.aio_pread(buf, off)] = (buf, off)
    while pending:
        c.poll(-1)
        for cookie in [k for k in pending if c.aio_command_completed(k)]:
            buf, off = pending.pop(cookie); done += 1
            if bytes(buf.to_bytearray()) != expected(off, 4096): bad += 1
print(json.dumps({"done": done, "bad": bad}))
`;

async function readAll(node: TestNode, round: number): Promise<{ done: number; bad: number }> {
  const out = await new Deno.Command(systemPython, {
    args: ["-c", reader, node.nbdUri("v"), String(round)],
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `reader failed:\n${new TextDecoder().decode(out.stderr)}${text}`);
  return JSON.parse(text);
}

Deno.test("reads at depth through a non-holder return the holder's bytes", async () => {
  const cluster = await startCluster(3, () => ["--replicas", "2"]);
  const [first, second] = cluster.nodes;
  const client = new Deno.Command(systemPython, {
    args: ["-c", writer, first.nbdUri("v")],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  });
  let process: Deno.ChildProcess | null = null;
  try {
    await createVolume(first, "v", { size });
    process = client.spawn();
    const lines = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    /** The writer's next line (a read may end inside one, or hold several). */
    const nextLine = async (): Promise<string> => {
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) return buffered;
        buffered += value;
      }
      const end = buffered.indexOf("\n");
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      return line;
    };
    const stdin = process.stdin.getWriter();
    for (let round = 0; round < 2; round++) {
      assert.equal(await nextLine(), "written");
      const before = await scrape(second);
      assert.deepEqual(await readAll(second, round), { done: 600, bad: 0 }, `round ${round}`);
      const after = await scrape(second);
      const reads = after.value("atoll_lease_forwarded_reads_total") -
        before.value("atoll_lease_forwarded_reads_total");
      assert.equal(reads, 600, "every read went to the holder");
      await stdin.write(new TextEncoder().encode("next\n"));
    }
    await stdin.close();
    assert.equal((await process.status).code, 0);
    process = null;
  } finally {
    if (process !== null) {
      try {
        process.kill("SIGKILL");
      } catch { /* gone */ }
      await process.status;
    }
    await cluster.stop();
  }
});
