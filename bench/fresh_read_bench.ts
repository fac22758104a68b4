/**
 * Reads of a fresh volume before its first write vs after it (issue 11: a VM
 * booting from a new clone reads long before it writes). Three real nodes on
 * loopback; a 64 MiB volume created through node 1 is filled through node 1 (so
 * its reads touch data), its lease broken (nobody holds it, as a fresh clone),
 * then node 3 reads 4 KiB at random offsets at QD1 over NBD (libnbd): before
 * any write there, then after one 4 KiB write through node 3 (it holds the
 * lease), each phase from a cold page cache (every node's files dropped from
 * it: replicas write around the page cache, and the first phase would leave
 * the second a warm one). The ratio before/after is what matters (target
 * ≥ 0.9); a first round warms the processes up and is not counted.
 *
 * Run: `deno run -A bench/fresh_read_bench.ts [--reads N] [--rounds N] [--nodes N] [--replicas R]`
 * (default three nodes at the default R; `--nodes 4 --replicas 3` leaves a quarter of the objects
 * off the reading node).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { percentile } from "./_stats.ts";
import { startCluster } from "../tests/_cluster.ts";
import { api, MiB, nbdPython } from "../tests/_nbd.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    reads: { type: "string", default: "2000" },
    rounds: { type: "string", default: "3" },
    nodes: { type: "string", default: "3" },
    replicas: { type: "string" },
  },
});
const volumeBytes = 64 * MiB;

const readLoop = `
import random, time
c = nbd.NBD(); c.connect_uri(sys.argv[1])
rng = random.Random(int(sys.argv[3]))
lat = []
for i in range(int(sys.argv[2])):
    off = rng.randrange(${volumeBytes / 4096}) * 4096
    t = time.monotonic(); c.pread(4096, off); lat.append((time.monotonic() - t) * 1000)
print(json.dumps(lat))
`;

/**
 * Drops the page cache of every file under `dir` (posix_fadvise DONTNEED), so
 * that each phase reads the node's copies as it would after a while: replicas
 * write other members' data around the page cache, and the first phase to read
 * would otherwise leave the second a warm cache.
 */
async function dropCache(dir: string): Promise<void> {
  const script = `import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        try:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)`;
  const out = await new Deno.Command("/usr/bin/python3", { args: ["-c", script, dir] }).output();
  if (!out.success) {
    throw new Error(
      `Cannot drop the page cache of ${dir}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

const cluster = await startCluster(
  Number(values.nodes),
  () => values.replicas === undefined ? [] : ["--replicas", values.replicas],
);
try {
  const [one, , three] = cluster.nodes;
  const rows: string[] = [];
  const ratios: number[] = [];
  // Round 0 warms the processes up (the read path's first calls compile it) and is not counted.
  for (let round = 0; round <= Number(values.rounds); round++) {
    const name = `fresh${round}`;
    await api(one, "/v1/volumes", { name, size: volumeBytes });
    await nbdPython(
      `c = nbd.NBD(); c.connect_uri(sys.argv[1])
for i in range(${volumeBytes / MiB}): c.pwrite(bytes([i % 251 + 1]) * ${MiB}, i * ${MiB})
c.flush(); c.shutdown(); print(json.dumps(True))`,
      [one.nbdUri(name)],
    );
    await api(one, `/v1/volumes/${name}/lease`, { action: "break" }, 200);
    for (const node of cluster.nodes) await dropCache(node.data);
    const before = await nbdPython(readLoop, [three.nbdUri(name), values.reads!, "1"]) as number[];
    await nbdPython(
      `c = nbd.NBD(); c.connect_uri(sys.argv[1]); c.pwrite(b'x' * 4096, 0); c.flush(); print(json.dumps(True))`,
      [three.nbdUri(name)],
    );
    for (const node of cluster.nodes) await dropCache(node.data);
    const after = await nbdPython(readLoop, [three.nbdUri(name), values.reads!, "1"]) as number[];
    const p = (xs: number[], q: number) => percentile([...xs].sort((a, b) => a - b), q);
    const iops = (xs: number[]) => xs.length / (xs.reduce((a, b) => a + b, 0) / 1000);
    if (round > 0) ratios.push(iops(before) / iops(after));
    rows.push(
      `${round === 0 ? "warm-up" : `round ${round}`}: before first write ${
        iops(before).toFixed(0)
      } IOPS p50 ${p(before, 0.5).toFixed(3)} ms; after ${iops(after).toFixed(0)} IOPS p50 ${
        p(after, 0.5).toFixed(3)
      } ms; ratio ${(iops(before) / iops(after)).toFixed(2)}`,
    );
    console.log(rows.at(-1));
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  console.log(`median ratio before/after: ${sorted[Math.floor(sorted.length / 2)].toFixed(2)}`);
} finally {
  await cluster.stop();
}
