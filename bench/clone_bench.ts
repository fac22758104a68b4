/**
 * Clone latency while the node is busy (issue 10): thin clones requested
 * through one node, idle first (the reference, same run), then while an image
 * uploads through that node, while it collects garbage (a cluster collection
 * pauses `--gc-settle` between its marks), and while healing copies data to a
 * member that just joined. Reported as p50/p99 per phase and as ratios to the
 * idle reference (machines here are noisy: the ratios are the figure).
 *
 * Goals: under 50 ms on a single node and under 200 ms on a cluster while
 * anything runs.
 *
 * Run: `deno run -A bench/clone_bench.ts [--clones N]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { percentile } from "./_stats.ts";
import { startCluster } from "../tests/_cluster.ts";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";
import { createVolume, MiB, uploadImage } from "../tests/_nbd.ts";
import { patternBytes } from "../tests/_files.ts";
import { writeImage } from "./upload_bench.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { clones: { type: "string", default: "40" } },
});
const clones = Number(values.clones);

let serial = 0;
/** Times `count` clones of `image` through `node`, one after another. */
async function timeClones(node: TestNode, image: string, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await createVolume(node, `c${serial++}`, { image });
    times.push(performance.now() - started);
  }
  return times;
}

/**
 * Clones while `busy` runs, `count` of them; with `repeat`, `busy` is run again
 * each time it ends (a collection on one node lasts less than a clone series).
 */
async function clonesDuring(
  node: TestNode,
  image: string,
  busy: () => Promise<unknown>,
  repeat = true,
): Promise<number[]> {
  let stopped = false;
  let ended = false;
  const running = (async () => {
    do await busy(); while (repeat && !stopped);
    ended = true;
  })();
  const times: number[] = [];
  await new Promise((resolve) => setTimeout(resolve, 100));
  while (!ended && times.length < clones) times.push(...await timeClones(node, image, 1));
  stopped = true;
  await running;
  return times;
}

function report(setup: string, phases: Record<string, number[]>) {
  const idle = [...phases.idle].sort((a, b) => a - b);
  for (const [phase, times] of Object.entries(phases)) {
    const sorted = [...times].sort((a, b) => a - b);
    const p50 = percentile(sorted, 0.5), p99 = percentile(sorted, 0.99);
    console.log(
      `${setup} ${phase.padEnd(8)} clones ${String(sorted.length).padStart(3)}  ` +
        `p50 ${p50.toFixed(1).padStart(7)} ms  p99 ${p99.toFixed(1).padStart(7)} ms  ` +
        `(x${(p50 / percentile(idle, 0.5)).toFixed(2)} / x${
          (p99 / percentile(idle, 0.99)).toFixed(2)
        } of idle)`,
    );
  }
}

const image = patternBytes(64 * MiB, 1);
const uploadBytes = 256 * MiB;
const uploadPrefixBytes = 16;
/**
 * Each upload is a 256 MiB image no other upload has (a prefix of its own
 * shifts every block), sent by curl from a file made once: made by this
 * process as the upload read it, the body held its event loop, which times the
 * clones, and its stalls became the clones' p99 (535-636 ms when made at once,
 * 60-209 ms when made 4 MiB at a time, against 40-56 with curl).
 */
const uploadFile = await Deno.makeTempFile({ prefix: "atoll-clone-bench-" });
await writeImage(uploadFile, uploadBytes / MiB, 1);

const upload = (node: TestNode, name: string) => async () => {
  const unique = serial++;
  const prefix = String(unique).padStart(uploadPrefixBytes, "0");
  const output = await new Deno.Command("bash", {
    args: [
      "-c",
      `(printf '%s' "$1"; head -c "$2" "$3") | curl -sS --fail-with-body -T - "$4"`,
      "upload",
      prefix,
      String(uploadBytes - uploadPrefixBytes),
      uploadFile,
      `${node.url}/v1/images/${name}${unique}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    throw new Error(`PUT image ${name}${unique}: ${text}`);
  }
};
const collect = (node: TestNode) => () =>
  node.fetch("/v1/gc", { method: "POST" }).then((r) => r.text());

try {
  {
    const node = await startNode();
    try {
      await uploadImage(node, "base", image);
      report("single", {
        idle: await timeClones(node, "base", clones),
        upload: await clonesDuring(node, "base", upload(node, "big")),
        gc: await clonesDuring(node, "base", collect(node)),
      });
    } finally {
      await node.stop();
    }
  }

  {
    const cluster = await startCluster(3, () => ["--gc-settle", "3", "--heal-interval", "1"]);
    const extra: TestNode[] = [];
    try {
      const [one] = cluster.nodes;
      await uploadImage(one, "base", image);
      const phases: Record<string, number[]> = {
        idle: await timeClones(one, "base", clones),
        upload: await clonesDuring(one, "base", upload(one, "big")),
        gc: await clonesDuring(one, "base", collect(one)),
      };
      // Healing: a fourth member joins and the others copy it its share.
      phases.healing = await clonesDuring(one, "base", async () => {
        extra.push(
          await startNode({
            args: cluster.args(["--join", one.gossip!, "--heal-interval", "1"]),
          }),
        );
        await new Promise((resolve) => setTimeout(resolve, 4000));
      });
      report("cluster", phases);
    } finally {
      for (const node of extra) await node.kill9().then(() => removeData(node));
      await cluster.stop();
    }
  }
} finally {
  await Deno.remove(uploadFile);
}
