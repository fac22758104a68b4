/** Test helper: the `atoll` command line run as a user runs it. */
import { exec, type Output } from "./_nbd.ts";

const root = new URL("../", import.meta.url).pathname;

/**
 * Runs `atoll ARGS` (main.ts) to completion from the repository, without the
 * caller's ATOLL_NODE and ATOLL_TOKEN unless `env` sets them, and without
 * colour; never throws for a non-zero exit.
 */
export function atollCli(args: string[], env: Record<string, string> = {}): Promise<Output> {
  return exec(Deno.execPath(), ["run", "--allow-all", "main.ts", ...args], {
    cwd: root,
    env: { ATOLL_NODE: "", ATOLL_TOKEN: "", NO_COLOR: "1", ...env },
  });
}
