/**
 * What a volume's size costs (issue 12): create, the first 4 KiB write and
 * flush, snapshot, and clone of the snapshot, for volumes of 1 GiB, 1 TiB,
 * 8 TiB and 64 TiB, on a single node and through a member of a 3-node cluster,
 * in one run. Each figure is the median of `--rounds` (ms); the last column is
 * the 64 TiB figure over the 1 GiB one (goal: within 1.5×; under 50 ms on a
 * single node, under 200 ms on a cluster).
 *
 * Then the metadata a flush writes: `--writes` random 4 KiB writes to a 10 GiB
 * volume on a single node, a flush every 100, and the bytes of map pages
 * (blocks) and of the volume's record stored per flush.
 *
 * Run: `deno run -A bench/map_size_bench.ts [--rounds N] [--writes N]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { percentile } from "./_stats.ts";
import { startCluster } from "../tests/_cluster.ts";
import { api, GiB, nbdPython } from "../tests/_nbd.ts";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    writes: { type: "string", default: "3000" },
  },
});
const rounds = Number(values.rounds);
const TiB = 1024 * GiB;
const sizes: [string, number][] = [
  ["1 GiB", GiB],
  ["1 TiB", TiB],
  ["8 TiB", 8 * TiB],
  ["64 TiB", 64 * TiB],
];
const operations = ["create", "write+flush", "snapshot", "clone"] as const;
type Figures = Record<(typeof operations)[number], number[]>;

const writeFlush = `
import time
c = nbd.NBD(); c.connect_uri(sys.argv[1])
t = time.monotonic(); c.pwrite(b'\\x5a' * 4096, int(sys.argv[2])); c.flush()
print(json.dumps((time.monotonic() - t) * 1000))
`;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

async function measure(node: TestNode, label: string): Promise<Map<string, Figures>> {
  const results = new Map<string, Figures>();
  for (const [name, size] of sizes) {
    const figures: Figures = { create: [], "write+flush": [], snapshot: [], clone: [] };
    for (let round = 0; round < rounds; round++) {
      const volume = `${label}-${name.replace(" ", "")}-${round}`;
      figures.create.push(await timed(() => api(node, "/v1/volumes", { name: volume, size })));
      const middle = Math.floor(size / 2 / 4096) * 4096;
      figures["write+flush"].push(
        await nbdPython(writeFlush, [node.nbdUri(volume), String(middle)]) as number,
      );
      figures.snapshot.push(
        await timed(() => api(node, `/v1/volumes/${volume}/snapshots`, { name: "s" })),
      );
      figures.clone.push(
        await timed(() =>
          api(node, "/v1/volumes", { name: `${volume}-c`, snapshot: `${volume}@s` })
        ),
      );
    }
    results.set(name, figures);
  }
  return results;
}

function report(label: string, results: Map<string, Figures>): void {
  const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.5);
  console.log(`\n${label}: median ms of ${rounds} rounds`);
  console.log(
    `${"".padEnd(12)}${sizes.map(([name]) => name.padStart(9)).join("")}  64 TiB / 1 GiB`,
  );
  for (const operation of operations) {
    const row = sizes.map(([name]) => median(results.get(name)![operation]));
    console.log(
      `${operation.padEnd(12)}${row.map((ms) => ms.toFixed(1).padStart(9)).join("")}  ` +
        `${(row[3] / row[0]).toFixed(2)}×`,
    );
  }
}

/** Bytes of every file under `dir` (recursive). */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) total += await bytesUnder(path);
    else if (entry.isFile) total += (await Deno.stat(path)).size;
  }
  return total;
}

const randomWrites = `
import random
c = nbd.NBD(); c.connect_uri(sys.argv[1])
rng = random.Random(11)
blocks = c.get_size() // 4096
for i in range(int(sys.argv[2])):
    c.pwrite(b'\\x33' * 4096, rng.randrange(blocks) * 4096)
    if i % 100 == 99: c.flush()
c.flush()
print(json.dumps(int(sys.argv[2])))
`;

async function metadataPerFlush(node: TestNode): Promise<void> {
  const writes = Number(values.writes);
  await api(node, "/v1/volumes", { name: "meta10g", size: 10 * GiB });
  const blocks = join(node.data, "blocks");
  const before = await bytesUnder(blocks).catch(() => 0);
  await nbdPython(randomWrites, [node.nbdUri("meta10g"), String(writes)]);
  const pages = (await bytesUnder(blocks)) - before;
  const flushes = Math.ceil(writes / 100);
  const info = await (await node.fetch("/v1/volumes/meta10g")).json();
  console.log(
    `\nmetadata per flush: ${writes} random 4 KiB writes to a 10 GiB volume, a flush every 100 ` +
      `(${flushes} flushes, ${info.allocatedBlocks} of 2560 blocks allocated):\n` +
      `  map pages stored ${pages} bytes, ${(pages / flushes / 1024).toFixed(1)} KiB per flush ` +
      `(one leaf page covers the whole 10 GiB map: at most ${(2560 * 35 / 1024).toFixed(1)} KiB)`,
  );
}

const single = await startNode();
try {
  report("single node", await measure(single, "n"));
  await metadataPerFlush(single);
} finally {
  await single.stop();
  await removeData(single);
}
const cluster = await startCluster(3);
try {
  report("cluster of 3 (through one member)", await measure(cluster.nodes[0], "c"));
} finally {
  await cluster.stop();
}
