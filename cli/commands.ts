/**
 * The client subcommands of `atoll` (DESIGN.md "Contracts"): each parses its
 * arguments, makes one or two calls to a node through {@linkcode AtollClient}
 * and prints a table, `key: value` lines or, with `--json`, the node's JSON.
 *
 * Exit codes: 0 on success, 2 for a usage error, 1 for any other failure, each
 * failure with exactly one line `atoll: <message>` on stderr.
 *
 * The commands themselves are in _image_commands.ts and _volume_commands.ts
 * (cluster status here), the command line's parse in _command_line.ts, the
 * node and token to use in _connection.ts.
 */
import { ApiError, AtollClient } from "./client.ts";
import { keyValues, table, toJson } from "./format.ts";
import { type CommandSpec, parseCommandLine, UsageError } from "./_command_line.ts";
import { nodeUrl, nodeUrlDefault, token } from "./_connection.ts";
import { backupCommands } from "./_backup_commands.ts";
import { imageCommands } from "./_image_commands.ts";
import { volumeCommands } from "./_volume_commands.ts";
import { changeCommands } from "./_change_commands.ts";

export { UsageError } from "./_command_line.ts";
export { nodeUrlDefault } from "./_connection.ts";

/** Help of the client subcommands, printed by `--help`. */
export const clientUsage = `usage:
  atoll image upload FILE NAME        upload a raw image (progress bar on a terminal)
  atoll image ls | image info NAME | image rm NAME
  atoll volume create NAME (--image I | --snapshot V@S) [--size N] | NAME --size N
                                      N in bytes or with K, M, G, T (binary: 10G = 10 GiB)
  atoll volume resize NAME SIZE [--force]   grow a volume (or with --force shrink it)
  atoll volume rollback NAME SNAPSHOT [--force]   back to a snapshot (--force: even in use)
  atoll volume flatten NAME           a clone stops depending on its image or snapshot
  atoll volume qos NAME [--clear] [--iops[-read|-write] N[:BURST]] [--bps[-read|-write] SIZE[:BURST]]
                                      I/O limits, live: N a second, off removes one; create
                                      takes the same flags
  atoll volume ls | volume info NAME | volume rm NAME [--cascade]
  atoll volume lease NAME [--break]   move the write lease to --node (cluster; a
                                      pre-migrate hook), or free it from a dead holder
  atoll volume changes NAME --since S [--until S2]   extents changed since snapshot S
                                      (to snapshot S2, or now), in 4 MiB blocks
  atoll snapshot create V@S | snapshot ls V | snapshot rm V@S
  atoll cluster status
  atoll cluster lost ID               a member gone for good (stopped, disk lost): give
                                      up the copies only it held (see docs/operations.md)
  atoll backup push V@S s3://BUCKET/PREFIX [--name NAME]   send a snapshot's missing blocks
  atoll backup ls s3://BUCKET/PREFIX
  atoll backup restore s3://BUCKET/PREFIX/BACKUP NAME      make image NAME of a backup
  atoll backup prune s3://BUCKET/PREFIX [--remove NAME,...] [--keep-last N]
                                      (the node uses the AWS_* variables of its environment)
client options:
  --node URL        node to talk to (env ATOLL_NODE; default ${nodeUrlDefault})
  --token-file F    file holding the API token (or the token itself in env ATOLL_TOKEN)
  --json            print the node's JSON instead of tables`;

const commands: Record<string, CommandSpec> = {
  ...imageCommands,
  ...volumeCommands,
  ...changeCommands,
  ...backupCommands,
  "cluster status": {
    operands: [],
    run: async ({ client, values, print }) => {
      const cluster = await client.cluster();
      if (values.json) return print(toJson(cluster));
      print(table(
        ["ID", "ADDRESS", "STATE", "ZONE"],
        cluster.members.map((member) => [
          member.id,
          member.address,
          member.state,
          member.zone ?? "-",
        ]),
      ));
      const { healing } = cluster;
      if (healing !== undefined) {
        print(keyValues([
          ["replicas", String(cluster.replicas)],
          ["dead grace", `${(cluster.deadGraceMs ?? 0) / 1000} s`],
          ["declared lost", (cluster.lost ?? []).join(", ") || "none"],
          [
            "healing",
            `${healing.passes} passes (${healing.walks} over every item), ` +
            `last ${healing.lastPassMs} ms; ` +
            `${healing.underReplicated} items short of copies here`,
          ],
          [
            "copied",
            `${healing.blocksCopied} blocks, ${healing.objectsCopied} objects; ` +
            `handed off ${healing.blocksHandedOff} blocks`,
          ],
          [
            "errors",
            `${healing.errors}${healing.lastError ? ` (last: ${healing.lastError})` : ""}`,
          ],
        ]));
      }
    },
  },
  "cluster lost": {
    operands: ["ID"],
    run: async ({ client, print }, [id]) => {
      await client.declareLost(id);
      print(`member ${id} declared lost: the copies only it held are given up`);
    },
  },
};

/**
 * Runs a client subcommand; `args` is the whole command line after `atoll`.
 * Returns the exit code, having printed any failure as one `atoll: ` line.
 */
export async function runClientCommand(args: string[]): Promise<number> {
  try {
    const parsed = parseCommandLine(args, commands);
    const { spec, operands, values } = parsed;
    if (spec === null) {
      console.log("help" in parsed ? helpOf(parsed.help, parsed.group) : clientUsage);
      return 0;
    }
    const client = new AtollClient({ url: nodeUrl(values), token: await token(values) });
    await spec.run({ client, values, print: (text) => console.log(text) }, operands);
    return 0;
  } catch (error) {
    console.error(`atoll: ${oneLine(failureMessage(error))}`);
    return error instanceof UsageError ? 2 : 1;
  }
}

function failureMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof ApiError && error.status === 401) {
    return `${message} (give --token-file F or set ATOLL_TOKEN)`;
  }
  return message;
}

/** Keeps the promise of one line on stderr whatever a message holds. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

/** A command's own usage line, else the lines of its group, else every command's. */
function helpOf(help: string | null, group: string | null): string {
  if (help !== null) return help;
  const lines = clientUsage.split("\n").filter((line) => line.startsWith(`  atoll ${group} `));
  return lines.length === 0 ? clientUsage : `usage:\n${lines.join("\n")}`;
}
