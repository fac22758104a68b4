/**
 * The HTTP front alone: request bodies drained by a handler that does nothing
 * else, through Deno.serve and through the node's own server
 * (net/http_server.ts), in one process, interleaved rounds: the rate and the
 * process's CPU time per GiB of each, and their ratios. An upload through a
 * node also hashes and writes every byte (bench/upload_bench.ts,
 * bench/upload_compare_bench.ts); this isolates what the front costs. Then
 * small requests (a 1 KiB POST answered with 200 bytes, as a sealed RPC of
 * the cluster port is), one at a time from fetch in another process (as a
 * peer's are): round trips per second.
 *
 * Run: `deno run -A bench/http_front_bench.ts [--size-mib 1024] [--rounds 9]`
 */
import { parseArgs } from "node:util";
import { HttpServer } from "../net/mod.ts";
import { median } from "./upload_bench.ts";

const MiB = 1024 * 1024;

/** Reads a request's body to its end; answers its length. */
async function drain(request: Request): Promise<Response> {
  if (request.headers.get("content-length") === "1024") {
    return new Response(new Uint8Array(await request.arrayBuffer()).subarray(0, 200));
  }
  let bytes = 0;
  const reader = request.body!.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    bytes += read.value.length;
  }
  return Response.json({ bytes });
}

/** CPU seconds (user + system, every thread) this process has used. */
function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** curl uploads `path` to `port`; bytes per second and CPU seconds per GiB of this process. */
async function upload(port: number, path: string, bytes: number) {
  const cpuBefore = cpuSeconds();
  const started = performance.now();
  const output = await new Deno.Command("curl", {
    args: ["-sS", "--fail", "-T", path, "-o", "/dev/null", `http://127.0.0.1:${port}/`],
  }).output();
  if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
  const seconds = (performance.now() - started) / 1000;
  return { rate: bytes / seconds, cpuPerGib: (cpuSeconds() - cpuBefore) / (bytes / 1024 ** 3) };
}

/** Runs {@linkcode smallRequests} in a child process (this file with `--client`). */
async function smallRequestsFromAnotherProcess(port: number, ms: number): Promise<number> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--client",
      String(port),
      "--ms",
      `${ms}`,
    ],
    stderr: "inherit",
  }).output();
  return Number(new TextDecoder().decode(output.stdout));
}

/** Sequential 1 KiB POSTs with fetch to `port` for `ms`: requests per second. */
async function smallRequests(port: number, ms: number): Promise<number> {
  const body = new Uint8Array(1024);
  const started = performance.now();
  let count = 0;
  while (performance.now() - started < ms) {
    const response = await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body });
    await response.arrayBuffer();
    count++;
  }
  return count / ((performance.now() - started) / 1000);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "size-mib": { type: "string", default: "1024" },
      rounds: { type: "string", default: "9" },
      client: { type: "string" },
      ms: { type: "string", default: "1000" },
    },
  });
  if (values.client !== undefined) {
    console.log(await smallRequests(Number(values.client), Number(values.ms)));
    Deno.exit(0);
  }
  const sizeMib = Number(values["size-mib"]);
  const dir = await Deno.makeTempDir({ prefix: "atoll-bench-" });
  const path = `${dir}/body.raw`;
  const file = await Deno.open(path, { write: true, create: true });
  for (let written = 0; written < sizeMib; written += 4) await file.write(new Uint8Array(4 * MiB));
  file.close();
  const denoServe = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, drain);
  const own = HttpServer.listen({
    hostname: "127.0.0.1",
    port: 0,
    name: "bench",
    handler: drain,
    limits: { connectionsMax: 16, connectionsPerAddressMax: 16 },
  });
  const ports = { "Deno.serve": denoServe.addr.port, "net/HttpServer": own.address.port };
  const runs = { "Deno.serve": [] as { rate: number; cpuPerGib: number }[], "net/HttpServer": [] };
  const rounds = Number(values.rounds);
  for (let round = 0; round < rounds; round++) {
    const names = Object.keys(ports) as (keyof typeof ports)[];
    for (const name of round % 2 === 0 ? names : names.reverse()) {
      (runs[name] as { rate: number; cpuPerGib: number }[]).push(
        await upload(ports[name], path, sizeMib * MiB),
      );
    }
  }
  const perSecond = { "Deno.serve": [] as number[], "net/HttpServer": [] as number[] };
  for (let round = 0; round < rounds; round++) {
    for (const name of Object.keys(ports) as (keyof typeof ports)[]) {
      perSecond[name].push(await smallRequestsFromAnotherProcess(ports[name], 1000));
    }
  }
  await denoServe.shutdown();
  await own.shutdown();
  await Deno.remove(dir, { recursive: true });
  const summary = Object.fromEntries(
    Object.entries(runs).map(([name, list]) => [name, {
      rate: median(list.map((run) => run.rate)),
      cpuPerGib: median(list.map((run) => run.cpuPerGib)),
    }]),
  );
  console.log(`request bodies of ${sizeMib} MiB drained, ${rounds} rounds, medians`);
  for (const [name, { rate, cpuPerGib }] of Object.entries(summary)) {
    console.log(
      `  ${name.padEnd(16)} ${(rate / 1e6).toFixed(0).padStart(6)} MB/s  ` +
        `${cpuPerGib.toFixed(3)} CPU s/GiB`,
    );
  }
  const [base, ours] = [summary["Deno.serve"], summary["net/HttpServer"]];
  console.log(
    `  ratio (own / Deno.serve): rate ${(ours.rate / base.rate).toFixed(3)}, ` +
      `CPU per GiB ${(ours.cpuPerGib / base.cpuPerGib).toFixed(3)}`,
  );
  const small = {
    base: median(perSecond["Deno.serve"]),
    ours: median(perSecond["net/HttpServer"]),
  };
  console.log(
    `1 KiB POSTs one at a time from another process, medians: Deno.serve ${
      small.base.toFixed(0)
    }/s, ` +
      `net/HttpServer ${small.ours.toFixed(0)}/s, ratio ${(small.ours / small.base).toFixed(3)}`,
  );
}
