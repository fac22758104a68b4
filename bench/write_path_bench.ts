/**
 * What a replicated object write costs in one process, without links, NBD or
 * other processes competing for the cores (issue 11: where a cluster write's
 * CPU goes): 4 KiB writes at random offsets of 64 objects of 4 MiB, QD32,
 * - through one `ObjectReplica` on a real disk (`LocalEngine` and
 *   `JournalDisk` in a temporary directory): one copy's work, the reference;
 * - through `ReplicatedObjects` over three such replicas (the writer's own copy
 *   among them, as at R=3): the writer's work and its three copies'.
 *
 * Prints the CPU of this process per write for each (median of the rounds) and
 * the ratio of the second to three times the first: above 1, what the writer
 * adds to the copies (its stamps, quorum, unflushed notes, locks). Rounds
 * alternate the two.
 *
 * Run: `deno run -A bench/write_path_bench.ts [--writes N] [--rounds N]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { LocalEngine } from "../core/local_engine.ts";
import { JournalDisk } from "../cluster/data/journal_disk.ts";
import { ObjectReplica, ReplicatedObjects } from "../cluster/data/mod.ts";
import { cpuSeconds } from "./_fio.ts";
import { median } from "./upload_bench.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    writes: { type: "string", default: "40000" },
    rounds: { type: "string", default: "3" },
  },
});
const writes = Number(values.writes);
const rounds = Number(values.rounds);
const uid = "b".repeat(32);
const objects = 64;
const objectBytes = 4 * 1024 * 1024;
const depth = 32;
const page = new Uint8Array(4096).fill(0x5a);

/** A replica on a real disk under `dir`. */
async function replicaAt(id: string, dir: string): Promise<ObjectReplica> {
  const engine = await LocalEngine.open({ dir });
  return new ObjectReplica(id, engine, { journal: new JournalDisk(`${dir}/journal`) });
}

/** Runs `write(name, offset)` `writes` times, `depth` at once; CPU µs per write. */
async function timed(write: (name: string, offset: number) => Promise<unknown>): Promise<number> {
  let started = 0;
  const before = await cpuSeconds([Deno.pid]);
  await Promise.all(Array.from({ length: depth }, async () => {
    while (started < writes) {
      started++;
      const object = Math.floor(Math.random() * objects);
      await write(`${uid}.1.${object}`, Math.floor(Math.random() * (objectBytes / 4096)) * 4096);
    }
  }));
  return (await cpuSeconds([Deno.pid]) - before) * 1e6 / writes;
}

/** One copy: ObjectReplica.change, versions counted here as a writer would. */
async function oneCopy(dir: string): Promise<number> {
  const replica = await replicaAt("a", dir);
  const versions = new Map<string, number>();
  const change = (name: string, offset: number, data: Uint8Array, truncate = false) => {
    const version = (versions.get(name) ?? 0) + 1;
    versions.set(name, version);
    return replica.change(name, { epoch: 1, version, offset, data, truncate });
  };
  for (let i = 0; i < objects; i++) {
    await change(`${uid}.1.${i}`, 0, new Uint8Array(objectBytes).fill(1), true);
  }
  await replica.flush();
  const us = await timed((name, offset) => change(name, offset, page));
  await replica.close();
  return us;
}

/** The writer over three copies in this process (R=3, its own among them). */
async function threeCopies(dir: string): Promise<number> {
  const replicas = await Promise.all(["a", "b", "c"].map((id) => replicaAt(id, `${dir}/${id}`)));
  const writer = new ReplicatedObjects({
    selfId: "a",
    replicasOf: () => replicas,
    epochOf: () => 1,
  });
  for (let i = 0; i < objects; i++) {
    await writer.write(`${uid}.1.${i}`, 0, new Uint8Array(objectBytes).fill(1), { truncate: true });
  }
  await writer.flush(uid);
  const us = await timed((name, offset) => writer.write(name, offset, page, { existing: true }));
  await writer.flush(uid);
  await Promise.all(replicas.map((replica) => replica.close()));
  return us;
}

const one: number[] = [];
const three: number[] = [];
for (let round = 0; round < rounds; round++) {
  for (const [kind, run, into] of [["one", oneCopy, one], ["three", threeCopies, three]] as const) {
    const dir = await Deno.makeTempDir({ prefix: "atoll-write-path-" });
    try {
      into.push(await run(dir));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    console.log(`round ${round + 1} ${kind}: ${into.at(-1)!.toFixed(1)} µs a write`);
  }
}
const [a, b] = [median(one), median(three)];
console.log(
  `\none copy ${a.toFixed(1)} µs, writer over three copies ${b.toFixed(1)} µs a write ` +
    `(CPU of this process, medians of ${rounds}); ratio to three copies ${
      (b / (3 * a)).toFixed(2)
    }`,
);
