/**
 * `deno task chaos`: a cluster of real node processes under faults, checked
 * end to end over NBD. Where the simulations (`deno task soak`) run the
 * cluster code on memory disks and a simulated network, this runs the real
 * bindings they leave out: node processes, links over TCP, the replica
 * journals, acceptor logs and object files on disk, and `kill -9`.
 *
 * Each volume is written through a raw NBD session on the node holding its
 * lease (4 KiB self-describing writes, a FLUSH now and then: _chaos_volume.ts).
 * Each round, while the writes run, one fault (seeded): `kill -9` of a member
 * holding no session (`replica`), of a member holding one (`holder`: its
 * volumes are taken over elsewhere while it is down), of every member at once
 * (`all`), a graceful stop and restart (`leave`), a session moved to another
 * member (`move`, a lease hand-over), or a holder stopped (SIGSTOP) with a
 * write just sent while its volumes are taken over elsewhere, then resumed
 * (`pause`: the write must be fenced). Then the members come back, the
 * broken volumes are recovered as a guest would (a new session, a FLUSH, every
 * slot read back), every volume is read through its holder and through another
 * member, and the next round waits until healing reports nothing short of
 * copies, so that faults never overlap. What must never happen: a flushed write
 * missing, a torn slot, an acknowledged write missing while its holder lives,
 * a read through another member that differs, a paused holder's write landing
 * after the takeover, a member that stayed up answering a request with an
 * error (a guest's EIO). At the end every volume is
 * read through every member.
 *
 *   deno task chaos [--rounds 20] [--seed 1] [--nodes 4] [--replicas 2]
 *                   [--volumes 2] [--size-mib 16] [--writes 300] [--keep] [--logs DIR]
 *                   [--faults replica,holder,all,leave,move,pause] [--flush-rate 0.05]
 *
 * `--flush-rate`: the share of writes a FLUSH follows (1: after each, as a
 * guest with `fsync=1`, whose flushes the holder then starts itself:
 * cluster/data/_early_flushes.ts).
 *
 * A failure prints the seed and the round, and with `--keep` leaves the data
 * directories and logs in place.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createVolume } from "../tests/_nbd.ts";
import type { RawNbdClient } from "../tests/_nbd_raw.ts";
import { Random } from "../cluster/sim/_sim_random.ts";
import { ChaosMembers } from "./_chaos_members.ts";
import { ChaosViolation, ChaosVolume } from "./_chaos_volume.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "20" },
    seed: { type: "string", default: "1" },
    nodes: { type: "string", default: "4" },
    replicas: { type: "string", default: "2" },
    volumes: { type: "string", default: "2" },
    "size-mib": { type: "string", default: "16" },
    writes: { type: "string", default: "300" },
    keep: { type: "boolean", default: false },
    logs: { type: "string" },
    faults: { type: "string" },
    "flush-rate": { type: "string", default: "0.05" },
  },
});
const settings = {
  rounds: Number(values.rounds),
  seed: Number(values.seed),
  nodes: Number(values.nodes),
  replicas: Number(values.replicas),
  volumes: Number(values.volumes),
  sizeBytes: Number(values["size-mib"]) * 1024 * 1024,
  writes: Number(values.writes),
  flushRate: Number(values["flush-rate"]),
};
if (!(settings.flushRate >= 0 && settings.flushRate <= 1)) {
  console.error(`--flush-rate ${values["flush-rate"]}: expected a share from 0 to 1`);
  Deno.exit(2);
}
/** Fast healing and a short dead grace: a round takes seconds, not minutes. */
const memberFlags = [
  "--replicas",
  String(settings.replicas),
  "--dead-grace",
  "6",
  "--heal-interval",
  "1",
];
const allFaults = ["replica", "holder", "all", "leave", "move", "pause"] as const;
type Fault = typeof allFaults[number];
const faults: Fault[] = values.faults === undefined
  ? [...allFaults]
  : values.faults.split(",").map((name) => {
    if (!(allFaults as readonly string[]).includes(name)) {
      console.error(`unknown fault ${name}: the faults are ${allFaults.join(", ")}`);
      Deno.exit(2);
    }
    return name as Fault;
  });

// The simulations' seeded stream: a run replays with its seed.
const stream = new Random(settings.seed);
const random = () => stream.next();
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const members = await ChaosMembers.start(settings.nodes, memberFlags, values.logs);
// Ctrl-C or a kill: every member started here goes, with its data (unless --keep).
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    console.error(`${signal}: stopping the members`);
    members.end(values.keep).finally(() => Deno.exit(130));
  });
}
const volumes = Array.from(
  { length: settings.volumes },
  (_, i) => new ChaosVolume(i, settings.sizeBytes),
);
let failed = false;
const started = performance.now();
try {
  for (const volume of volumes) {
    await createVolume(members.node(0), volume.name, { size: settings.sizeBytes });
    await volume.connect(0, members.node(0).nbdPort);
  }
  for (let round = 1; round <= settings.rounds; round++) {
    const fault = pick(faults);
    const at = performance.now();
    await runRound(fault);
    const counts = volumes.map((v) => v.counts);
    const sum = (key: keyof ChaosVolume["counts"]) => counts.reduce((n, c) => n + c[key], 0);
    console.log(
      `round ${round}/${settings.rounds} ${fault.padEnd(7)} ${
        ((performance.now() - at) / 1000).toFixed(1)
      } s: ${sum("writes")} writes, ${sum("flushes")} flushes, ${sum("errors")} errors, ` +
        `${sum("recoveries")} recoveries, ${sum("checked")} checks, clean`,
    );
    for (const volume of volumes) {
      for (const line of volume.errors.splice(0)) console.log(`  ${volume.name}: ${line}`);
    }
  }
  for (const volume of volumes) if (!await volume.flush()) await reopen(volume);
  for (const i of members.indexes()) {
    for (const volume of volumes) await members.checkThrough(volume, i);
  }
  console.log(
    `${settings.rounds} rounds clean (seed ${settings.seed}, ${settings.nodes} members, ` +
      `R=${settings.replicas}), every volume read through every member, ${
        ((performance.now() - started) / 1000).toFixed(0)
      } s`,
  );
} catch (error) {
  failed = true;
  const kind = error instanceof ChaosViolation ? "VIOLATION" : "FAILED";
  console.error(`${kind} (seed ${settings.seed}): ${(error as Error).stack}`);
} finally {
  for (const volume of volumes) volume.close();
  await members.end(failed && values.keep);
}
Deno.exit(failed ? 1 : 0);

/** One round: writes with a fault in their midst, recovery, checks, and healing settled. */
async function runRound(fault: Fault): Promise<void> {
  const writing = writeAll(settings.writes);
  await sleep(50 + random() * 400);
  const down: number[] = [];
  const idle = members.indexes().filter((i) => !volumes.some((v) => v.node === i));
  if (fault === "replica" || (fault === "leave" && idle.length > 0)) {
    const victim = pick(idle.length > 0 ? idle : members.indexes());
    if (fault === "leave") await members.stop(victim);
    else await kill(victim);
    down.push(victim);
  } else if (fault === "holder") {
    const victim = pick(volumes).node ?? 0;
    await kill(victim);
    down.push(victim);
  } else if (fault === "all") {
    for (const i of members.indexes()) await kill(i);
    down.push(...members.indexes());
  }
  await writing;
  await members.checkRunning();
  if (fault === "pause") await pauseHolder();
  if (fault === "move") {
    const volume = pick(volumes);
    await volume.disconnect();
    const to = pick(members.indexes().filter((i) => i !== volume.node));
    await volume.connect(to, members.node(to).nbdPort);
  }
  // Volumes whose holder died move to a member still up (a takeover) while it is down.
  if (down.length < members.count) {
    for (const volume of volumes.filter((v) => !v.open)) await reopen(volume);
    await writeAll(settings.writes / 3);
  }
  await sleep(random() * 3000);
  await members.restart(down);
  for (const volume of volumes.filter((v) => !v.open)) await reopen(volume);
  await writeAll(settings.writes / 3);
  for (const volume of volumes) {
    if (!await volume.flush()) await reopen(volume);
    await volume.check(null);
    await members.checkThrough(volume, pick(members.indexes().filter((i) => i !== volume.node)));
  }
  // A member that stayed up never answers a guest with an error: what the cluster cannot do
  // yet is waited for (core/patient_authority.ts), and no fault here lasts a minute.
  for (const volume of volumes) {
    for (const { node, what, error } of volume.refused.splice(0)) {
      if (node !== null && down.includes(node)) continue;
      throw new ChaosViolation(
        `member ${node}, which stayed up, answered a ${what} of ${volume.name} with NBD error ` +
          `${error} (a guest's EIO)`,
      );
    }
  }
  await members.checkRunning();
  await members.healed();
}

/**
 * A holder stops (SIGSTOP, a stalled VM or a long pause) with a write of each
 * of its volumes just sent; while it is stopped, its volumes are opened and
 * recovered on other members (the lease is taken over once it is declared
 * dead) and written there; then it runs again, and the writes it took before
 * the pause must not land: its lease epoch is fenced.
 */
async function pauseHolder(): Promise<void> {
  const victim = pick(volumes).node ?? 0;
  const zombies: RawNbdClient[] = [];
  for (const volume of volumes.filter((v) => v.node === victim)) {
    const session = await volume.abandon(random);
    if (session !== null) zombies.push(session);
  }
  await members.setRunning(victim, false);
  try {
    for (const volume of volumes.filter((v) => !v.open)) await reopen(volume);
    await writeAll(settings.writes / 3);
  } finally {
    await members.setRunning(victim, true);
  }
  await sleep(3000); // the writes it took before the pause run now, and are refused
  for (const zombie of zombies) zombie.close();
}

/** `count` writes on every open volume at once, a FLUSH after a share of them (`--flush-rate`). */
async function writeAll(count: number): Promise<void> {
  await Promise.all(volumes.map(async (volume) => {
    for (let i = 0; i < count && volume.open; i++) {
      if (!await volume.write(random)) break;
      if (random() < settings.flushRate && !await volume.flush()) break;
    }
  }));
}

/** SIGKILLs member `i`; the sessions on it break. */
async function kill(i: number): Promise<void> {
  await members.kill(i);
  for (const volume of volumes) if (volume.node === i) volume.close();
}

/** A new session for a volume whose session broke, on a member up, and its recovery. */
async function reopen(volume: ChaosVolume): Promise<void> {
  const startedMs = performance.now();
  for (;;) {
    const to = pick(members.indexes(true));
    try {
      await volume.connect(to, members.node(to).nbdPort);
      if (volume.broken) {
        await volume.recover();
        const seconds = ((performance.now() - startedMs) / 1000).toFixed(1);
        console.log(`  ${volume.name}: recovered on member ${to} in ${seconds} s`);
      }
      return;
    } catch (error) {
      if (error instanceof ChaosViolation || performance.now() - startedMs > 120_000) throw error;
      volume.close();
      await sleep(500);
    }
  }
}
