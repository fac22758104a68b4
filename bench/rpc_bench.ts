/**
 * Calls between nodes: links (binary frames on persistent, multiplexed
 * connections, authenticated once) against sealed RPC over HTTP (one sealed
 * envelope per request and reply, posted with fetch), in the same run, against
 * one server process whose cluster port serves both.
 *
 * An "echo" call sends `size` bytes and gets them back, for 0 B, 4 KiB and
 * 4 MiB. Per transport and size: latency one call at a time (p50, p99), and
 * throughput with `--depth` calls in flight (calls/s, MiB/s both ways).
 * Rounds alternate the transports; figures are the medians of the rounds, and
 * the ratio is links / sealed HTTP (above 1: links are faster; for latency,
 * sealed HTTP / links).
 *
 * Run: `deno run -A bench/rpc_bench.ts [--rounds N] [--seconds S] [--depth D]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { percentile } from "./_stats.ts";
import {
  ClusterKey,
  LinkClient,
  LinkServer,
  listenClusterPort,
  MemoryIdentity,
  type RpcCaller,
  RpcClient,
  type RpcMethod,
  rpcServer,
} from "../cluster/transport/mod.ts";

const key = new ClusterKey(new TextEncoder().encode("rpc-bench-key-".repeat(3)));
const sizes = [0, 4096, 4 << 20];

/** The server process: echo on a cluster port; prints the port, runs until stdin closes. */
async function serve(): Promise<void> {
  const identity = new MemoryIdentity();
  const methods: Record<string, RpcMethod> = {
    echo: (request) => ({ header: {}, data: request.data }),
  };
  const links = new LinkServer({ key, identity, selfId: "server", methods });
  const port = listenClusterPort({ hostname: "127.0.0.1", port: 0 }, {
    links,
    requests: rpcServer(key, identity, methods),
  });
  console.log(port.port);
  for await (const _ of Deno.stdin.readable) { /* until the bench ends */ }
  await port.shutdown();
}

interface Figures {
  p50Ms: number;
  p99Ms: number;
  callsPerSecond: number;
  /** Calls that failed and were sent again. */
  failures: number;
}

async function measure(
  rpc: RpcCaller,
  address: string,
  size: number,
  options: { seconds: number; depth: number },
): Promise<Figures> {
  const data = new Uint8Array(size).fill(7);
  const call = async () => {
    for (;;) {
      // fetch may send on a pooled connection the server is closing (it never used it within
      // the cluster port's 5 s): counted, and sent again, as cluster callers would.
      const reply = await rpc.call(address, "echo", { header: {}, data }).catch((error) => {
        failures++;
        if (failures > 100) throw error;
        return null;
      });
      if (reply === null) continue;
      if ((reply.data?.length ?? 0) !== size) throw new Error("short echo");
      return;
    }
  };
  let failures = 0;
  for (let i = 0; i < 20; i++) await call(); // warm up: sessions, links, JIT
  const latencies: number[] = [];
  const quarter = options.seconds * 1000 / 2;
  for (const started = performance.now(); performance.now() - started < quarter;) {
    const at = performance.now();
    await call();
    latencies.push(performance.now() - at);
  }
  latencies.sort((a, b) => a - b);
  let calls = 0;
  const started = performance.now();
  const worker = async () => {
    while (performance.now() - started < quarter) {
      await call();
      calls++;
    }
  };
  await Promise.all(Array.from({ length: options.depth }, worker));
  const seconds = (performance.now() - started) / 1000;
  return {
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    callsPerSecond: calls / seconds,
    failures,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function show(label: string, size: number, figures: Figures): string {
  const mib = (figures.callsPerSecond * size * 2) / (1 << 20);
  return `${label.padEnd(12)} ${String(size).padStart(8)} B  p50 ${figures.p50Ms.toFixed(3)} ms` +
    `  p99 ${figures.p99Ms.toFixed(3)} ms  ${
      figures.callsPerSecond.toFixed(0).padStart(6)
    } calls/s` +
    `  ${mib.toFixed(1).padStart(7)} MiB/s` +
    (figures.failures > 0 ? `  (${figures.failures} failed, sent again)` : "");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      serve: { type: "boolean", default: false },
      rounds: { type: "string", default: "3" },
      seconds: { type: "string", default: "2" },
      depth: { type: "string", default: "16" },
    },
  });
  if (values.serve) return await serve();
  const options = { seconds: Number(values.seconds), depth: Number(values.depth) };
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--serve"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value!.trim());
  const address = `127.0.0.1:${port}`;
  const transports: Record<string, RpcCaller & { close?: () => Promise<void> }> = {
    "sealed HTTP": new RpcClient(key, new MemoryIdentity()),
    "links": new LinkClient(key, new MemoryIdentity(), { selfId: "bench" }),
  };
  console.log(
    `echo to another process on loopback; ${values.rounds} rounds, depth ${options.depth}`,
  );
  try {
    for (const size of sizes) {
      const rounds: Record<string, Figures[]> = { "sealed HTTP": [], "links": [] };
      for (let round = 0; round < Number(values.rounds); round++) {
        for (const [label, rpc] of Object.entries(transports)) {
          rounds[label].push(await measure(rpc, address, size, options));
        }
      }
      const medians: Record<string, Figures> = {};
      for (const [label, figures] of Object.entries(rounds)) {
        medians[label] = {
          p50Ms: median(figures.map((f) => f.p50Ms)),
          p99Ms: median(figures.map((f) => f.p99Ms)),
          callsPerSecond: median(figures.map((f) => f.callsPerSecond)),
          failures: figures.reduce((sum, f) => sum + f.failures, 0),
        };
        console.log(show(label, size, medians[label]));
      }
      const [old, links] = [medians["sealed HTTP"], medians["links"]];
      console.log(
        `${"ratio".padEnd(12)} ${String(size).padStart(8)} B  p50 ${
          (old.p50Ms / links.p50Ms).toFixed(2)
        }x  p99 ${(old.p99Ms / links.p99Ms).toFixed(2)}x  throughput ${
          (links.callsPerSecond / old.callsPerSecond).toFixed(2)
        }x`,
      );
    }
  } finally {
    await transports.links.close?.();
    await server.stdin.close();
    await server.status;
  }
}

if (import.meta.main) await main();
