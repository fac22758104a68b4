/**
 * CPU an idle cluster uses, by what it stores (issue 11: background work must
 * scale with change, not with data). Three real nodes on loopback (R=3): CPU
 * over `--seconds` from /proc (user + system of the node processes) while they
 * hold nothing but one empty volume (the reference, same run), then after a
 * volume of `--size-mib` was written in full through NBD and flushed, and the
 * cluster settled for `--settle-seconds`.
 *
 * Run: `deno run -A bench/idle_cpu_bench.ts [--size-mib 1024] [--seconds 30]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startCluster } from "../tests/_cluster.ts";
import { api, MiB, nbdPython } from "../tests/_nbd.ts";
import { cpuSeconds } from "./_fio.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    "size-mib": { type: "string", default: "1024" },
    seconds: { type: "string", default: "30" },
    "settle-seconds": { type: "string", default: "15" },
  },
});
const sizeMib = Number(values["size-mib"]);
const seconds = Number(values.seconds);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const cluster = await startCluster(3);
try {
  const pids = cluster.nodes.map((node) => node.process.pid);
  const cores = async () => {
    const before = await cpuSeconds(pids);
    const started = performance.now();
    await sleep(seconds * 1000);
    return (await cpuSeconds(pids) - before) / ((performance.now() - started) / 1000);
  };
  const [one] = cluster.nodes;
  await api(one, "/v1/volumes", { name: "empty", size: 64 * MiB });
  await sleep(Number(values["settle-seconds"]) * 1000);
  const empty = await cores();
  console.log(`3 nodes holding nothing: ${empty.toFixed(3)} cores`);
  await api(one, "/v1/volumes", { name: "full", size: sizeMib * MiB });
  await nbdPython(
    `c = nbd.NBD(); c.connect_uri(sys.argv[1])
import os
for i in range(${sizeMib}): c.pwrite(os.urandom(${MiB}), i * ${MiB})
c.flush(); c.shutdown(); print(json.dumps(True))`,
    [one.nbdUri("full")],
  );
  await sleep(Number(values["settle-seconds"]) * 1000);
  const full = await cores();
  console.log(
    `3 nodes holding ${sizeMib} MiB (R=3): ${full.toFixed(3)} cores, ` +
      `${(full / 3).toFixed(3)} per node; ${(full - empty).toFixed(3)} more than holding nothing`,
  );
} finally {
  await cluster.stop();
}
