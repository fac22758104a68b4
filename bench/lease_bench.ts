/**
 * Write-lease hand-over and takeover (issue 5), on three real nodes on loopback.
 *
 * - Hand-over: 100 moves alternating between node 1 and node 2; each move is a
 *   new NBD connection whose first 4 KiB write takes the lease from the other
 *   node (release, fence, compare-and-set, reload), then FLUSH and DISC. The
 *   latency of that first write is the hand-over as a VM sees it. Reference in
 *   the same run: the same loop on one node (new connection, 4 KiB write, FLUSH,
 *   DISC, no move), so the ratio shows what the move itself costs.
 * - Takeover: the holder is killed (SIGKILL) while idle, and a write through
 *   another node is timed until it succeeds: failure detection by gossip plus
 *   the move. Repeated `--deaths` times on fresh clusters.
 *
 * Target: hand-over p99 under 50 ms on loopback.
 *
 * Run: `deno run -A bench/lease_bench.ts [--moves N] [--deaths N]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { percentile } from "./_stats.ts";
import { startCluster } from "../tests/_cluster.ts";
import { createVolume, nbdPython } from "../tests/_nbd.ts";

const handOverTargetMs = 50;

const loop = `
import time
count = int(sys.argv[3])
latency = []
for i in range(count):
    h = nbd.NBD(); h.connect_uri(sys.argv[1 + i % 2])
    data = bytes([i % 251 + 1]) * 4096
    started = time.monotonic(); h.pwrite(data, (i * 4096) % (8 << 20))
    latency.append((time.monotonic() - started) * 1000)
    h.flush(); h.shutdown()
print(json.dumps(latency))
`;

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    max: sorted.at(-1)!,
    slowest: sorted.slice(-5).map((ms) => Math.round(ms)),
  };
}

async function handOver(moves: number) {
  const cluster = await startCluster(3);
  try {
    const [one, two] = cluster.nodes;
    await createVolume(one, "vm1", { size: 16 * 1024 * 1024 });
    const uri = (node: typeof one) => node.nbdUri("vm1");
    // Warm up: the lease lands on node 1, connections and caches exist.
    await nbdPython(loop, [uri(one), uri(one), "10"]);
    const reference = await nbdPython(loop, [uri(one), uri(one), String(moves)]) as number[];
    const moving = await nbdPython(loop, [uri(two), uri(one), String(moves)]) as number[];
    return { reference: summary(reference), moving: summary(moving) };
  } finally {
    await cluster.stop();
  }
}

async function takeover(): Promise<number> {
  const cluster = await startCluster(3);
  try {
    const [one, two] = cluster.nodes;
    await createVolume(one, "vm1", { size: 16 * 1024 * 1024 });
    await nbdPython(loop, [one.nbdUri("vm1"), one.nbdUri("vm1"), "1"]);
    await one.kill9();
    const [took] = await nbdPython(loop, [two.nbdUri("vm1"), two.nbdUri("vm1"), "1"]) as number[];
    return took;
  } finally {
    await cluster.stop();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      moves: { type: "string", default: "100" },
      deaths: { type: "string", default: "3" },
    },
  });
  const { reference, moving } = await handOver(Number(values.moves));
  const fmt = (ms: number) => ms.toFixed(1).padStart(7);
  console.log(
    `lease hand-over over ${values.moves} moves (first 4 KiB write on the new node), ms:`,
  );
  console.log(`                      p50     p90     p99     max   slowest five`);
  for (const [label, s] of [["same node (ref)", reference], ["moving         ", moving]] as const) {
    console.log(
      `  ${label} ${fmt(s.p50)} ${fmt(s.p90)} ${fmt(s.p99)} ${fmt(s.max)}   ${s.slowest.join(" ")}`,
    );
  }
  console.log(
    `  ratio moving/ref p50 ${(moving.p50 / reference.p50).toFixed(1)}, p99 ${
      (moving.p99 / reference.p99).toFixed(1)
    }; target p99 < ${handOverTargetMs} ms: ${moving.p99 < handOverTargetMs ? "met" : "NOT met"}`,
  );
  const deaths: number[] = [];
  for (let i = 0; i < Number(values.deaths); i++) deaths.push(await takeover());
  console.log(
    `takeover after SIGKILL of the holder (gossip detection + move), ms: ${
      deaths.map((ms) => ms.toFixed(0)).join(", ")
    }`,
  );
}
