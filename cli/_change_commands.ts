/** `atoll volume changes`: what an incremental backup of a volume copies. */
import { formatSize } from "./size.ts";
import { table, toJson } from "./format.ts";
import { type CommandSpec, UsageError } from "./_command_line.ts";

/** The changes command, by its words. */
export const changeCommands: Record<string, CommandSpec> = {
  "volume changes": {
    operands: ["NAME"],
    options: ["since", "until"],
    synopsis: "NAME --since SNAPSHOT [--until SNAPSHOT]",
    run: async ({ client, values, print }, [name]) => {
      if (values.since === undefined) {
        throw new UsageError(
          "volume changes: give --since SNAPSHOT " +
            "(usage: atoll volume changes NAME --since SNAPSHOT [--until SNAPSHOT])",
        );
      }
      const changes = await client.volumeChanges(name, values.since, values.until);
      if (values.json) return print(toJson(changes));
      const rows = changes.extents.map((extent) => [String(extent.offset), String(extent.length)]);
      print(table(["OFFSET", "LENGTH"], rows, [0, 1]));
      const to = changes.until === null ? "now" : `${name}@${changes.until}`;
      print(
        `${formatSize(changes.changedBytes)} changed in ${changes.extents.length} extent(s) ` +
          `from ${name}@${changes.since} to ${to} (in blocks of ${formatSize(changes.blockSize)})`,
      );
    },
  },
};
