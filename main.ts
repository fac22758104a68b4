/**
 * The atoll command: `atoll serve` runs a node (cli/serve_command.ts); the
 * other subcommands are clients of a node's HTTP API (cli/commands.ts). The
 * same file is also the hash workers' entry when Atoll runs as one bundled
 * file (see wasm/hash_pool.ts).
 */
import { isWorkerContext, serveHashJobs } from "./wasm/hash_worker.ts";
import { runServe } from "./cli/serve_command.ts";
import { serveSynopsis } from "./cli/serve_settings.ts";
import { clientUsage, runClientCommand } from "./cli/commands.ts";
import { version, versionText } from "./cli/version.ts";

export { version } from "./cli/version.ts";

const usage = `atoll ${version}: storage for VM images and volumes

usage:
${serveSynopsis()}
  atoll serve --help                  each option's default, ATOLL_ variable, config file key
  atoll version                       Atoll's and Deno's versions (also --version)
${clientUsage.replace(/^usage:\n/, "")}`;

async function main(args: string[]): Promise<number> {
  if (args.length === 0 || args[0] === "--help" || args[0] === "-h" || args[0] === "help") {
    console.log(usage);
    return args.length === 0 ? 2 : 0;
  }
  if (args[0] === "--version" || args[0] === "version") {
    if (args.length > 1 && args[1] !== "--help" && args[1] !== "-h") {
      console.error(`atoll: version takes no arguments, not ${JSON.stringify(args[1])}`);
      return 2;
    }
    console.log(args.length > 1 ? "usage: atoll version" : versionText());
    return 0;
  }
  if (args[0] === "serve") return await runServe(args.slice(1));
  return await runClientCommand(args);
}

if (import.meta.main) {
  if (isWorkerContext()) {
    serveHashJobs();
  } else {
    try {
      Deno.exit(await main(Deno.args));
    } catch (error) {
      console.error(`atoll: ${error instanceof Error ? error.message : error}`);
      Deno.exit(1);
    }
  }
}
