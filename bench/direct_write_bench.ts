/**
 * New blocks written around the page cache (core/_direct_writes.ts), a file
 * each, against one `dd oflag=direct` writing as many 4 MiB blocks into one file
 * on the same file system, in the same run: the ratio of their throughputs (1:
 * as fast as dd, which creates no file a block). A staging
 * buffer that did not start a memory page made each 4 MiB write 25× slower
 * here (60 ms against 2.4 ms), which a ratio near 0.05 would show again.
 *
 * Run: `deno run -A bench/direct_write_bench.ts [--blocks N] [--rounds N] [--dir DIR]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as fs from "node:fs";
import { DirectWrites } from "../core/_direct_writes.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    blocks: { type: "string", default: "64" },
    rounds: { type: "string", default: "3" },
    dir: { type: "string", default: Deno.env.get("TMPDIR") ?? "/tmp" },
  },
});
const blocks = Number(values.blocks);
const blockBytes = 4 * 1024 * 1024;
const dir = await Deno.makeTempDir({ dir: values.dir, prefix: "atoll-direct-bench-" });

/** MB/s of `blocks` blocks, each a new file, through DirectWrites. */
function atoll(direct: DirectWrites): number {
  const data = new Uint8Array(blockBytes).fill(0x5a);
  const started = performance.now();
  for (let i = 0; i < blocks; i++) {
    const path = `${dir}/block-${i}`;
    fs.closeSync(fs.openSync(path, "w", 0o644));
    if (direct.writePrefix(path, data, 0, "block") !== blockBytes) {
      throw new Error("the direct write fell back to the page cache");
    }
  }
  const seconds = (performance.now() - started) / 1000;
  for (let i = 0; i < blocks; i++) fs.rmSync(`${dir}/block-${i}`);
  return (blocks * blockBytes) / 1e6 / seconds;
}

/** MB/s of one dd writing as many 4 MiB blocks with O_DIRECT into one new file. */
async function dd(): Promise<number> {
  const started = performance.now();
  const { code } = await new Deno.Command("dd", {
    args: ["if=/dev/zero", `of=${dir}/dd`, "bs=4M", `count=${blocks}`, "oflag=direct"],
    stderr: "null",
  }).output();
  if (code !== 0) throw new Error("dd failed");
  const seconds = (performance.now() - started) / 1000;
  fs.rmSync(`${dir}/dd`);
  return (blocks * blockBytes) / 1e6 / seconds;
}

try {
  const direct = DirectWrites.probe(dir);
  if (direct === null) throw new Error(`${dir}: its file system refuses O_DIRECT`);
  for (let round = 1; round <= Number(values.rounds); round++) {
    const ours = atoll(direct);
    const theirs = await dd();
    console.log(
      `round ${round}: DirectWrites ${ours.toFixed(0)} MB/s, dd ${theirs.toFixed(0)} MB/s ` +
        `(one file, one process), ratio ${(ours / theirs).toFixed(2)}`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
