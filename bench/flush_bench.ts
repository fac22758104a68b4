/**
 * What a durable write costs (issue 11: guests flush constantly): 4 KiB random
 * writes at QD1 with a FLUSH after each, through the lease holder of a 3-node
 * cluster (R=3, and R=2) and through a single node in the same run (the
 * reference). Prints p50/p99 of the write, of the FLUSH and of the pair, and
 * the cluster/single ratio of pairs per second. Goals: FLUSH p50 ≤ 1 ms,
 * write+flush p50 ≤ 1.5 ms on the cluster.
 *
 * Run: `deno run -A bench/flush_bench.ts [--ops N] [--rounds N]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { percentile } from "./_stats.ts";
import { startCluster } from "../tests/_cluster.ts";
import { api, MiB, nbdPython } from "../tests/_nbd.ts";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { ops: { type: "string", default: "1000" }, rounds: { type: "string", default: "2" } },
});
const volumeBytes = 256 * MiB;

const loop = `
import random, time
c = nbd.NBD(); c.connect_uri(sys.argv[1])
rng = random.Random(7)
buf = b'\\x5a' * 4096
w, f = [], []
for i in range(int(sys.argv[2])):
    off = rng.randrange(${volumeBytes / 4096}) * 4096
    t0 = time.monotonic(); c.pwrite(buf, off); t1 = time.monotonic(); c.flush(); t2 = time.monotonic()
    w.append((t1 - t0) * 1000); f.append((t2 - t1) * 1000)
print(json.dumps([w, f]))
`;

interface Figures {
  write: number[];
  flush: number[];
}

async function measure(node: TestNode, name: string): Promise<Figures> {
  await api(node, "/v1/volumes", { name, size: volumeBytes });
  // Warm up (leases, links, first touch of blocks), then measure.
  await nbdPython(loop, [node.nbdUri(name), "200"]);
  const [write, flush] = await nbdPython(loop, [node.nbdUri(name), values.ops!]) as number[][];
  return { write, flush };
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const ms = (xs: number[], q: number) => percentile(sorted(xs), q).toFixed(3);
const pairs = (f: Figures) => f.write.map((w, i) => w + f.flush[i]);
const rate = (f: Figures) => pairs(f).length / (pairs(f).reduce((a, b) => a + b, 0) / 1000);

function line(label: string, f: Figures, reference?: Figures): string {
  const ratio = reference === undefined
    ? ""
    : `; ${(rate(f) / rate(reference)).toFixed(2)}× single`;
  return `${label.padEnd(14)} write p50 ${ms(f.write, 0.5)} p99 ${ms(f.write, 0.99)} | ` +
    `flush p50 ${ms(f.flush, 0.5)} p99 ${ms(f.flush, 0.99)} | ` +
    `write+flush p50 ${ms(pairs(f), 0.5)} ms, ${rate(f).toFixed(0)}/s${ratio}`;
}

const single = await startNode();
const r3 = await startCluster(3);
const r2 = await startCluster(3, () => ["--replicas", "2"]);
try {
  for (let round = 1; round <= Number(values.rounds); round++) {
    const one = await measure(single, `single${round}`);
    const three = await measure(r3.nodes[0], `r3v${round}`);
    const two = await measure(r2.nodes[0], `r2v${round}`);
    console.log(`round ${round}`);
    console.log(line("single node", one));
    console.log(line("cluster R=3", three, one));
    console.log(line("cluster R=2", two, one));
  }
} finally {
  await r2.stop();
  await r3.stop();
  await single.stop();
  await removeData(single);
}
