import assert from "node:assert/strict";
import { raiseFilesLimit, readFilesLimit } from "./files_limit.ts";

Deno.test("raiseFilesLimit() raises a soft open-files limit below the hard one with prlimit", async () => {
  const before = await readFilesLimit();
  assert.ok(before !== null, "Linux has /proc/self/limits");
  // One below the hard limit: enough to need a raise, harmless to the rest of this process.
  const lowered = before.hard - 1;
  const output = await new Deno.Command("prlimit", {
    args: [`--pid=${Deno.pid}`, `--nofile=${lowered}:${before.hard}`],
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const raised = await raiseFilesLimit();
  assert.deepEqual(raised, {
    soft: before.hard,
    hard: before.hard,
    raisedFrom: lowered,
    note: null,
  });
  assert.deepEqual(await readFilesLimit(), { soft: before.hard, hard: before.hard });
});
