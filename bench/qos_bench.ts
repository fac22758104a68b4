/**
 * What per-volume I/O limits cost a volume that does not hit them, as ratios
 * against references measured in the same run (the machine is noisy: 2 shared
 * cores).
 *
 * 1. In process (tinybench): the NBD path's check per request, added to the
 *    least work a request does (reference): the check of a volume without
 *    limits (one field read), and admission under limits it never reaches.
 * 2. Over NBD (fio, nbd engine): one node, two volumes written in full first:
 *    `free` (no limits) and `capped` (limits at their maxima: every request
 *    goes through the buckets and none waits). Random 4 KiB reads and writes at
 *    QD32; the runs alternate, the order flips every round; the table shows
 *    medians, the server's CPU per I/O, and the median of per-round ratios.
 *    With `--reference ENTRY` (e.g. main.ts of a checkout without limits), a
 *    node from ENTRY serves a third volume, `before`, and `free` is also
 *    compared with it: the cost of the check itself against no check at all.
 *
 * Run: `deno run -A bench/qos_bench.ts [--rounds N] [--runtime S] [--reference PATH/main.ts]`
 * (`--rounds 0`: the in-process part alone).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Bench } from "tinybench";
import { IoLimiter, qosBpsMax, qosIopsMax } from "../core/mod.ts";
import { Command, decodeRequest, encodeRequest } from "../nbd/protocol.ts";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";
import { cpuSeconds, fio } from "./_fio.ts";

const MiB = 1024 * 1024;
/** Requests per tinybench iteration, so that the timer's own cost is spread thin. */
const requestsPerIteration = 4096;
/** Rounds of the in-process tasks. */
const inProcessRounds = 5;
/** Bytes of each volume that fio reads and writes (written in full first). */
const regionMib = 256;

/**
 * Nanoseconds per request of each in-process task: the request decoded once
 * (an NBD header, as the server decodes it), then per request the work every
 * request does in any case (its length summed) alone, or with the check.
 * Tinybench runs the tasks in turn for `inProcessRounds` rounds; the medians
 * are shown, and the median of per-round ratios.
 */
async function inProcess(): Promise<void> {
  const request = decodeRequest(encodeRequest({
    flags: 0,
    type: Command.write,
    cookie: new Uint8Array(8),
    offset: 4096n,
    length: 4096,
  }))!;
  const requests = Array.from({ length: requestsPerIteration }, () => ({ ...request }));
  const free = new IoLimiter();
  const capped = new IoLimiter({ iops: qosIopsMax, bps: qosBpsMax, iopsWrite: qosIopsMax });
  let sink = 0;
  // One loop per task (no shared call site that sees every task's closure, which
  // would make the call megamorphic and time V8 rather than the check).
  const tasks: [string, () => void][] = [
    ["per-request work alone (reference)", () => {
      for (const r of requests) sink += r.length;
    }],
    ["+ check of a volume without limits", () => {
      for (const r of requests) {
        if (free.limited && !free.admit("write", r.length)) sink--;
        sink += r.length;
      }
    }],
    ["+ admission under limits never reached", () => {
      for (const r of requests) {
        if (capped.limited && !capped.admit("write", r.length)) sink--;
        sink += r.length;
      }
    }],
  ];
  const ns: number[][] = tasks.map(() => []);
  for (let round = 0; round < inProcessRounds; round++) {
    const bench = new Bench({ time: 300, warmupTime: 100, throws: true });
    for (const [label, task] of tasks) bench.add(label, task);
    await bench.run();
    bench.tasks.forEach((task, index) => {
      if (task.result.state !== "completed") throw new Error(`${task.name}: ${task.result.state}`);
      ns[index].push((task.result.latency.mean * 1e6) / requestsPerIteration);
    });
  }
  console.log(
    `\nIn process: ns per request (median of ${inProcessRounds} rounds of batches of ` +
      `${requestsPerIteration}), and the added ns against the reference`,
  );
  const reference = median(ns[0]);
  for (const [index, [label]] of tasks.entries()) {
    const value = median(ns[index]);
    console.log(
      `  ${label.padEnd(40)} ${value.toFixed(2).padStart(7)} ns  ` +
        `(+${(value - reference).toFixed(2)} ns; rounds ${
          ns[index].map((n) => n.toFixed(2)).join(" ")
        })`,
    );
  }
  if (sink < 0) console.log(sink); // keeps the loops' work observable
}

/** A volume served by a node, by NBD URI, and the pid whose CPU time is read. */
interface Target {
  label: string;
  uri: string;
  pid: number;
}

/** IOPS and the server's CPU per I/O of one fio run. */
async function measure(target: Target, rw: string, runtime: number) {
  const before = await cpuSeconds([target.pid]);
  const result = await fio({ kind: "nbd", uri: target.uri }, [
    `--rw=${rw}`,
    "--bs=4k",
    "--iodepth=32",
    `--size=${regionMib}M`,
    "--time_based",
    `--runtime=${runtime}`,
  ]);
  const cpu = await cpuSeconds([target.pid]) - before;
  return { iops: result.iops, cpuPerIoUs: (cpu / (result.iops * runtime)) * 1e6 };
}

async function volume(node: TestNode, name: string, qos: Record<string, number>) {
  const response = await node.fetch("/v1/volumes", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, size: 1024 * MiB, qos }),
  });
  if (response.status !== 201) throw new Error(`create ${name}: ${await response.text()}`);
  const uri = node.nbdUri(name);
  await fio({ kind: "nbd", uri }, ["--rw=write", "--bs=1m", "--iodepth=8", `--size=${regionMib}M`]);
  return uri;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function overNbd(rounds: number, runtime: number, reference: string | null) {
  const nodes: TestNode[] = [await startNode()];
  try {
    const node = nodes[0];
    const pid = node.process.pid;
    const targets: Target[] = [
      { label: "free", uri: await volume(node, "free", {}), pid },
      {
        label: "capped",
        uri: await volume(node, "capped", { iops: qosIopsMax, bps: qosBpsMax }),
        pid,
      },
    ];
    if (reference !== null) {
      const before = await startNode({ entry: reference });
      nodes.push(before);
      // A node without limits takes no qos key: create the volume plainly.
      const response = await before.fetch("/v1/volumes", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "before", size: 1024 * MiB }),
      });
      if (response.status !== 201) throw new Error(`reference: ${await response.text()}`);
      const uri = before.nbdUri("before");
      await fio({ kind: "nbd", uri }, ["--rw=write", "--bs=1m", `--size=${regionMib}M`]);
      targets.push({ label: "before", uri, pid: before.process.pid });
    }
    console.log(`\nOver NBD: fio 4k QD32, ${runtime} s runs, ${rounds} rounds`);
    for (const rw of ["randread", "randwrite"]) {
      const samples = new Map(targets.map((t) => [t.label, [] as { iops: number; cpu: number }[]]));
      const ratios = { capped: [] as number[], before: [] as number[] };
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        const iops = new Map<string, number>();
        for (const target of order) {
          const { iops: value, cpuPerIoUs } = await measure(target, rw, runtime);
          samples.get(target.label)!.push({ iops: value, cpu: cpuPerIoUs });
          iops.set(target.label, value);
        }
        ratios.capped.push(iops.get("capped")! / iops.get("free")!);
        if (reference !== null) ratios.before.push(iops.get("free")! / iops.get("before")!);
      }
      for (const target of targets) {
        const runs = samples.get(target.label)!;
        console.log(
          `  ${rw.padEnd(9)} ${target.label.padEnd(6)} ${
            median(runs.map((r) => r.iops)).toFixed(0).padStart(7)
          } IOPS  ${median(runs.map((r) => r.cpu)).toFixed(1).padStart(6)} µs server CPU/IO`,
        );
      }
      console.log(
        `  ${rw.padEnd(9)} capped/free ${median(ratios.capped).toFixed(3)} ` +
          `(rounds: ${ratios.capped.map((r) => r.toFixed(3)).join(" ")})`,
      );
      if (reference !== null) {
        console.log(
          `  ${rw.padEnd(9)} free/before ${median(ratios.before).toFixed(3)} ` +
            `(rounds: ${ratios.before.map((r) => r.toFixed(3)).join(" ")})`,
        );
      }
    }
  } finally {
    for (const node of nodes) {
      await node.stop();
      await removeData(node);
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "3" },
      runtime: { type: "string", default: "3" },
      reference: { type: "string" },
    },
  });
  await inProcess();
  const rounds = Number(values.rounds);
  if (rounds > 0) await overNbd(rounds, Number(values.runtime), values.reference ?? null);
}
