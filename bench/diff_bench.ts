/**
 * What a diff between two snapshots costs (issue 13, incremental backup): two
 * stored maps of a 64 TiB volume that share most of their pages, compared by
 * `diffMaps` (core/map_store.ts), which reads only the pages whose names
 * differ. The volume references 16 GiB, 256 GiB, then 1 TiB of data (4 Ki to
 * 256 Ki allocated 4 MiB blocks) and 64 blocks changed between the snapshots,
 * all in one map page; then the same 1 TiB with the 64 changes spread over 16
 * pages. Every figure is the median of `--rounds`, and every ratio is against
 * the first row, measured in the same run.
 *
 * Expected: diffMaps stays flat as the data grows 64× (it reads the inner
 * pages and the changed leaves, never the data, nor the unchanged leaves) and
 * grows with the pages that differ; loading both maps whole and comparing them
 * (what a diff without shared page names would do) grows with the allocated
 * map, and reading the data is never needed by either.
 *
 * Run: `deno run -A bench/diff_bench.ts [--rounds N]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { BlockMap } from "../core/block_map.ts";
import { LocalEngine } from "../core/local_engine.ts";
import { volumeSizeBytesMax } from "../core/limits.ts";
import {
  diffMaps,
  encodeMapRoot,
  enginePages,
  loadMap,
  type PageSource,
  storeMapPages,
} from "../core/map_store.ts";
import { percentile } from "./_stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string", default: "9" } },
});
const rounds = Number(values.rounds);
const MiB = 1024 * 1024;
const pageEntries = 4096;
const hashOf = (n: number) => n.toString(16).padStart(64, "0");

/** One case: allocated entries, and the changed entries between the snapshots. */
interface Case {
  label: string;
  allocated: number;
  changed: number[];
}

const inOnePage = Array.from({ length: 64 }, (_, i) => i * 64);
const overSixteenPages = Array.from({ length: 64 }, (_, i) => (i % 16) * pageEntries + i);
const cases: Case[] = [
  { label: "16 GiB data, 64 changes in 1 page", allocated: 4096, changed: inOnePage },
  { label: "256 GiB data, 64 changes in 1 page", allocated: 65536, changed: inOnePage },
  { label: "1 TiB data, 64 changes in 1 page", allocated: 262144, changed: inOnePage },
  { label: "1 TiB data, 64 changes in 16 pages", allocated: 262144, changed: overSixteenPages },
];

async function stored(engine: LocalEngine, map: BlockMap): Promise<Uint8Array> {
  await storeMapPages(engine, map);
  await engine.flush();
  return encodeMapRoot(map);
}

/** The median of `rounds` timed runs of `fn`, after one untimed run (warm caches and JIT). */
async function median(fn: () => Promise<void>): Promise<number> {
  await fn();
  const samples: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    await fn();
    samples.push(performance.now() - started);
  }
  return percentile(samples.sort((a, b) => a - b), 0.5);
}

interface Row {
  label: string;
  diffMs: number;
  pagesRead: number;
  loadMs: number;
}

async function measure(engine: LocalEngine, one: Case): Promise<Row> {
  const before = new BlockMap({ sizeBytes: volumeSizeBytesMax, blockSize: 4 * MiB });
  for (let index = 0; index < one.allocated; index++) {
    before.set(index, { kind: "block", hash: hashOf(index + 1) });
  }
  const after = before.clone();
  for (const index of one.changed) after.set(index, { kind: "block", hash: hashOf(1e9 + index) });
  const [a, b] = [await stored(engine, before), await stored(engine, after)];
  let pagesRead = 0;
  const counting: PageSource = {
    load: (id, length) => {
      pagesRead++;
      return enginePages(engine).load(id, length);
    },
  };
  let found: number[] = [];
  const diffMs = await median(async () => {
    pagesRead = 0;
    found = [];
    for await (const index of diffMaps(a, b, counting)) found.push(index);
  });
  if (found.join() !== [...one.changed].sort((x, y) => x - y).join()) {
    throw new Error(
      `${one.label}: diffMaps found ${found.length} changes, not ${one.changed.length}`,
    );
  }
  const loadMs = await median(async () => {
    const [x, y] = [await loadMap(a, enginePages(engine)), await loadMap(b, enginePages(engine))];
    // Loaded maps name their pages: compare as if they did not (every entry of every page).
    let differ = 0;
    for (let index = 0; index < one.allocated; index++) if (y.differsAt(x, index)) differ++;
    if (differ !== one.changed.length) throw new Error(`${one.label}: ${differ} differ`);
  });
  return { label: one.label, diffMs, pagesRead, loadMs };
}

const dir = await Deno.makeTempDir({ prefix: "atoll-diff-bench-" });
const engine = await LocalEngine.open({ dir });
try {
  const rows: Row[] = [];
  for (const one of cases) rows.push(await measure(engine, one));
  const [reference] = rows;
  console.log(`diff of two snapshots of a 64 TiB volume: median ms of ${rounds} rounds`);
  console.log(
    `${"".padEnd(38)}${"diffMaps".padStart(10)}${"pages".padStart(7)}${"ratio".padStart(8)}` +
      `${"load+compare".padStart(14)}${"ratio".padStart(8)}`,
  );
  for (const row of rows) {
    console.log(
      `${row.label.padEnd(38)}${row.diffMs.toFixed(2).padStart(10)}` +
        `${String(row.pagesRead).padStart(7)}${
          (row.diffMs / reference.diffMs).toFixed(2).padStart(7)
        }×` +
        `${row.loadMs.toFixed(1).padStart(14)}${
          (row.loadMs / reference.loadMs).toFixed(1).padStart(7)
        }×`,
    );
  }
} finally {
  await engine.close();
  await Deno.remove(dir, { recursive: true });
}
