/** The `atoll volume` and `atoll snapshot` subcommands. */
import { formatSize, parseSize } from "./size.ts";
import {
  blockCount,
  formatOrigin,
  formatTime,
  snapshotLines,
  toJson,
  volumeLines,
} from "./format.ts";
import { type CommandContext, type CommandSpec, UsageError } from "./_command_line.ts";
import { listCommand } from "./_list_command.ts";

/** The volume and snapshot commands, by their words. */
export const volumeCommands: Record<string, CommandSpec> = {
  "volume create": {
    operands: ["NAME"],
    options: ["image", "snapshot", "size"],
    synopsis: "NAME (--image I | --snapshot V@S) [--size N] | NAME --size N",
    run: createVolume,
  },
  "volume resize": {
    operands: ["NAME", "SIZE"],
    options: ["force"],
    synopsis: "NAME SIZE [--force]",
    run: async ({ client, values, print }, [name, size]) => {
      const volume = await client.resizeVolume(
        name,
        sizeOf(size, "volume resize"),
        values.force === true,
      );
      print(values.json ? toJson(volume) : volumeLines(volume));
    },
  },
  "volume rollback": {
    operands: ["NAME", "SNAPSHOT"],
    options: ["force"],
    synopsis: "NAME SNAPSHOT [--force]",
    run: async ({ client, values, print }, [name, snapshot]) => {
      const volume = await client.rollbackVolume(name, snapshot, values.force === true);
      print(values.json ? toJson(volume) : volumeLines(volume));
    },
  },
  "volume flatten": {
    operands: ["NAME"],
    run: async ({ client, values, print }, [name]) => {
      const volume = await client.flattenVolume(name);
      print(values.json ? toJson(volume) : volumeLines(volume));
    },
  },
  "volume ls": listCommand({
    operands: [],
    fetch: (client) => client.listVolumes(),
    headers: ["NAME", "SIZE", "ORIGIN", "ALLOCATED", "CREATED"],
    row: (volume) => [
      volume.name,
      formatSize(volume.size),
      formatOrigin(volume),
      `${volume.allocatedBlocks}/${blockCount(volume)}`,
      formatTime(volume.createdAt),
    ],
    right: [1, 3],
  }),
  "volume info": {
    operands: ["NAME"],
    run: async ({ client, values, print }, [name]) => {
      const volume = await client.volumeInfo(name);
      print(values.json ? toJson(volume) : volumeLines(volume));
    },
  },
  "volume rm": {
    operands: ["NAME"],
    options: ["cascade"],
    synopsis: "NAME [--cascade]",
    run: async ({ client, values, print }, [name]) => {
      await client.deleteVolume(name, { cascade: values.cascade });
      const what = values.cascade ? " and its snapshots" : "";
      if (!values.json) print(`Deleted volume ${JSON.stringify(name)}${what}`);
    },
  },
  "volume lease": {
    operands: ["NAME"],
    options: ["break"],
    synopsis: "NAME [--break]",
    run: async ({ client, values, print }, [name]) => {
      const volume = await client.changeLease(name, values.break ? "break" : "acquire");
      print(values.json ? toJson(volume) : volumeLines(volume));
    },
  },
  "snapshot create": {
    operands: ["VOLUME@SNAPSHOT"],
    run: async ({ client, values, print }, [reference]) => {
      const { volume, snapshot } = parseReference(reference, "snapshot create");
      const created = await client.createSnapshot(volume, snapshot);
      print(values.json ? toJson(created) : snapshotLines(created));
    },
  },
  "snapshot ls": listCommand({
    operands: ["VOLUME"],
    fetch: (client, [volume]) => client.listSnapshots(volume),
    headers: ["SNAPSHOT", "SIZE", "CREATED"],
    row: (snapshot) => [
      `${snapshot.volume}@${snapshot.name}`,
      formatSize(snapshot.size),
      formatTime(snapshot.createdAt),
    ],
    right: [1],
  }),
  "snapshot rm": {
    operands: ["VOLUME@SNAPSHOT"],
    run: async ({ client, values, print }, [reference]) => {
      const { volume, snapshot } = parseReference(reference, "snapshot rm");
      await client.deleteSnapshot(volume, snapshot);
      if (!values.json) print(`Deleted snapshot ${JSON.stringify(reference)}`);
    },
  },
};

async function createVolume(context: CommandContext, [name]: string[]): Promise<void> {
  const { client, values, print } = context;
  const origins = (["image", "snapshot"] as const).filter((key) => values[key] !== undefined);
  if (origins.length > 1 || (origins.length === 0 && values.size === undefined)) {
    const usage = `usage: atoll volume create ${volumeCommands["volume create"].synopsis}`;
    throw new UsageError(
      `volume create: give --image or --snapshot (with --size for a larger clone), or --size ` +
        `(${usage})`,
    );
  }
  const size = values.size === undefined ? {} : { size: sizeOf(values.size, "volume create") };
  let source;
  if (values.image !== undefined) source = { image: values.image, ...size };
  else if (values.snapshot !== undefined) {
    parseReference(values.snapshot, "volume create --snapshot");
    source = { snapshot: values.snapshot, ...size };
  } else source = { size: size.size! };
  const volume = await client.createVolume(name, source);
  print(values.json ? toJson(volume) : volumeLines(volume));
}

/** A size as the command line gives it (`20G`, `512M`, bytes), or a usage error. */
function sizeOf(text: string, where: string): number {
  try {
    return parseSize(text);
  } catch (error) {
    throw new UsageError(`${where}: ${(error as Error).message}`);
  }
}

/** Splits `VOLUME@SNAPSHOT`; the node validates the names themselves. */
function parseReference(reference: string, where: string): { volume: string; snapshot: string } {
  const parts = reference.split("@");
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
    throw new UsageError(`${where}: expected VOLUME@SNAPSHOT, got ${JSON.stringify(reference)}`);
  }
  return { volume: parts[0], snapshot: parts[1] };
}
