/**
 * Many volumes on a cluster: three real nodes (R=3) take `--volumes` volume
 * creations over HTTP through one node, `--concurrency` at a time, and the
 * benchmark prints the creation latency (p50, p99) and rate, each node's open
 * descriptors and RSS as the count grows (from /proc), and how long a listing
 * of every volume takes through another node and one volume's status.
 *
 * Run: `deno run -A bench/metadata_scale_bench.ts [--volumes 2000] [--concurrency 8]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startCluster } from "../tests/_cluster.ts";
import type { TestNode } from "../tests/_node.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    volumes: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "8" },
  },
});
const count = Number(values.volumes);
const concurrency = Number(values.concurrency);

const descriptors = (node: TestNode) =>
  [...Deno.readDirSync(`/proc/${node.process.pid}/fd`)].length;
const rssMib = (node: TestNode) =>
  Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${node.process.pid}/status`))![1]) >>
  10;

const cluster = await startCluster(3, () => ["--replicas", "3"]);
const show = (label: string) =>
  console.log(
    label.padEnd(18) +
      cluster.nodes.map((node, i) => `node ${i + 1}: ${descriptors(node)} fds, ${rssMib(node)} MiB`)
        .join(" | "),
  );
try {
  const [one, two] = cluster.nodes;
  show("before");
  const latencies: number[] = [];
  const started = performance.now();
  const step = Math.max(concurrency, Math.round(count / 4 / concurrency) * concurrency);
  for (let i = 0; i < count; i += concurrency) {
    await Promise.all(
      Array.from({ length: Math.min(concurrency, count - i) }, async (_, j) => {
        const begun = performance.now();
        const response = await one.fetch("/v1/volumes", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ name: `vol${i + j}`, size: 1 << 30 }),
        });
        const text = await response.text();
        if (response.status !== 201) throw new Error(`vol${i + j}: ${response.status} ${text}`);
        latencies.push(performance.now() - begun);
      }),
    );
    if ((i + concurrency) % step === 0 && i + concurrency < count) {
      show(`${i + concurrency} volumes`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  show(`${count} volumes`);
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  console.log(
    `${count} creations in ${seconds.toFixed(1)} s (${(count / seconds).toFixed(0)}/s), ` +
      `p50 ${at(0.5).toFixed(1)} ms, p99 ${at(0.99).toFixed(1)} ms`,
  );
  let begun = performance.now();
  const listed = await (await two.fetch("/v1/volumes")).json() as unknown[];
  console.log(
    `list through node 2: ${listed.length} volumes in ${(performance.now() - begun).toFixed(0)} ms`,
  );
  begun = performance.now();
  const status = await two.fetch(`/v1/volumes/vol${count - 1}`);
  await status.body?.cancel();
  console.log(
    `one volume through node 2: ${status.status} in ${(performance.now() - begun).toFixed(1)} ms`,
  );
} finally {
  await cluster.stop();
}
