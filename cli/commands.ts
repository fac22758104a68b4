/**
 * The client subcommands of `atoll` (DESIGN.md "Contracts"): each parses its
 * arguments, makes one or two calls to a node through {@linkcode AtollClient}
 * and prints a table, `key: value` lines or, with `--json`, the node's JSON.
 *
 * Exit codes: 0 on success, 2 for a usage error, 1 for any other failure, each
 * failure with exactly one line `atoll: <message>` on stderr.
 */
import { parseArgs } from "node:util";
import { ApiError, AtollClient } from "./client.ts";
import { renderSummary, UploadProgress } from "./progress.ts";
import { formatSize, parseSize } from "./size.ts";
import {
  blockCount,
  formatOrigin,
  formatTime,
  keyValues,
  sizeWithBytes,
  snapshotLines,
  sortByName,
  table,
  toJson,
  volumeLines,
} from "./format.ts";

/** Node contacted when neither `--node` nor `ATOLL_NODE` says otherwise. */
export const nodeUrlDefault = "http://127.0.0.1:8080";

/** Help of the client subcommands, printed by `--help`. */
export const clientUsage = `usage:
  atoll image upload FILE NAME        upload a raw image (progress bar on a terminal)
  atoll image ls | image info NAME | image rm NAME
  atoll volume create NAME (--image I | --snapshot V@S | --size N)
                                      N in bytes or with K, M, G, T (binary: 10G = 10 GiB)
  atoll volume ls | volume info NAME | volume rm NAME [--cascade]
  atoll volume lease NAME [--break]   move the write lease to --node (cluster; a
                                      pre-migrate hook), or free it from a dead holder
  atoll snapshot create V@S | snapshot ls V | snapshot rm V@S
  atoll cluster status
client options:
  --node URL        node to talk to (env ATOLL_NODE; default ${nodeUrlDefault})
  --token-file F    file holding the API token (or the token itself in env ATOLL_TOKEN)
  --json            print the node's JSON instead of tables`;

/** A mistake in the command line: exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

const optionSpecs = {
  node: { type: "string" },
  "token-file": { type: "string" },
  json: { type: "boolean" },
  image: { type: "string" },
  snapshot: { type: "string" },
  size: { type: "string" },
  cascade: { type: "boolean" },
  break: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;
const globalOptions = new Set(["node", "token-file", "json", "help"]);
const pollTimeoutMs = 2000;

type Values = {
  [K in keyof typeof optionSpecs]?: (typeof optionSpecs)[K]["type"] extends "string" ? string
    : boolean;
};

interface Context {
  client: AtollClient;
  values: Values;
  /** Prints one line (or a block of lines) on stdout. */
  print: (text: string) => void;
}

interface CommandSpec {
  /** Positional arguments after the command words, as the usage names them. */
  operands: string[];
  /** Options other than the global ones that this command takes. */
  options?: (keyof typeof optionSpecs)[];
  /** What usage errors show after the command words, when more than the operands. */
  synopsis?: string;
  run: (context: Context, operands: string[]) => Promise<void>;
}

const commands: Record<string, CommandSpec> = {
  "image upload": { operands: ["FILE", "NAME"], run: uploadCommand },
  "image ls": {
    operands: [],
    run: async ({ client, values, print }) => {
      const images = sortByName(await client.listImages());
      if (values.json) return print(toJson(images));
      print(table(
        ["NAME", "SIZE", "BLOCKS", "ZERO", "CREATED"],
        images.map((image) => [
          image.name,
          formatSize(image.size),
          String(image.blocks),
          String(image.zeroBlocks),
          formatTime(image.createdAt),
        ]),
        [1, 2, 3],
      ));
    },
  },
  "image info": {
    operands: ["NAME"],
    run: async ({ client, values, print }, [name]) => {
      const image = await client.imageInfo(name);
      if (values.json) return print(toJson(image));
      print(keyValues([
        ["name", image.name],
        ["size", sizeWithBytes(image.size)],
        ["block size", formatSize(image.blockSize)],
        ["blocks", `${image.blocks} (${image.zeroBlocks} zero)`],
        ["created", formatTime(image.createdAt)],
      ]));
    },
  },
  "image rm": {
    operands: ["NAME"],
    run: async ({ client, values, print }, [name]) => {
      await client.deleteImage(name);
      if (!values.json) print(`Deleted image ${JSON.stringify(name)}`);
    },
  },
  "volume create": {
    operands: ["NAME"],
    options: ["image", "snapshot", "size"],
    synopsis: "NAME (--image I | --snapshot V@S | --size N)",
    run: createVolume,
  },
  "volume ls": {
    operands: [],
    run: async ({ client, values, print }) => {
      const volumes = sortByName(await client.listVolumes());
      if (values.json) return print(toJson(volumes));
      print(table(
        ["NAME", "SIZE", "ORIGIN", "ALLOCATED", "CREATED"],
        volumes.map((volume) => [
          volume.name,
          formatSize(volume.size),
          formatOrigin(volume),
          `${volume.allocatedBlocks}/${blockCount(volume)}`,
          formatTime(volume.createdAt),
        ]),
        [1, 3],
      ));
    },
  },
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
  "snapshot ls": {
    operands: ["VOLUME"],
    run: async ({ client, values, print }, [volume]) => {
      const snapshots = sortByName(await client.listSnapshots(volume));
      if (values.json) return print(toJson(snapshots));
      print(table(
        ["SNAPSHOT", "SIZE", "CREATED"],
        snapshots.map((snapshot) => [
          `${snapshot.volume}@${snapshot.name}`,
          formatSize(snapshot.size),
          formatTime(snapshot.createdAt),
        ]),
        [1],
      ));
    },
  },
  "snapshot rm": {
    operands: ["VOLUME@SNAPSHOT"],
    run: async ({ client, values, print }, [reference]) => {
      const { volume, snapshot } = parseReference(reference, "snapshot rm");
      await client.deleteSnapshot(volume, snapshot);
      if (!values.json) print(`Deleted snapshot ${JSON.stringify(reference)}`);
    },
  },
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
          [
            "healing",
            `${healing.passes} passes, last ${healing.lastPassMs} ms; ` +
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
};

/**
 * Runs a client subcommand; `args` is the whole command line after `atoll`.
 * Returns the exit code, having printed any failure as one `atoll: ` line.
 */
export async function runClientCommand(args: string[]): Promise<number> {
  try {
    const { spec, operands, values } = parseCommandLine(args);
    if (spec === null) {
      console.log(clientUsage);
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

/** Parses and checks the command line; `spec` is null when help was asked for. */
function parseCommandLine(args: string[]) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: optionSpecs, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(parseArgsMessage(error));
  }
  const values = parsed.values as Values;
  if (values.help) return { spec: null, operands: [], values };
  const [group = "", verb, ...operands] = parsed.positionals;
  const verbs = Object.keys(commands).filter((key) => key.startsWith(`${group} `));
  if (verbs.length === 0) {
    throw new UsageError(`unknown command ${JSON.stringify(group)} (see atoll --help)`);
  }
  const key = `${group} ${verb}`;
  const spec = commands[key];
  if (verb === undefined || spec === undefined) {
    const what = verb === undefined
      ? `${group} needs a subcommand`
      : `unknown command ${JSON.stringify(key)}`;
    throw new UsageError(`${what}: expected ${verbs.join(", ")}`);
  }
  const usage = `usage: atoll ${[key, spec.synopsis ?? spec.operands.join(" ")].join(" ").trim()}`;
  for (const option of Object.keys(values)) {
    if (!globalOptions.has(option) && !spec.options?.includes(option as never)) {
      throw new UsageError(`${key}: option --${option} does not apply (${usage})`);
    }
  }
  if (operands.length < spec.operands.length) {
    throw new UsageError(`${key}: missing ${spec.operands[operands.length]} (${usage})`);
  }
  if (operands.length > spec.operands.length) {
    const extra = JSON.stringify(operands[spec.operands.length]);
    throw new UsageError(`${key}: unexpected argument ${extra} (${usage})`);
  }
  return { spec, operands, values };
}

/** node:util's parse errors, reworded to name the flag without its long advice. */
function parseArgsMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const option = message.match(/'(-[^' ]+)/)?.[1] ?? "";
  const code = (error as { code?: string }).code;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    return `unknown option ${option} (see atoll --help)`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    return message.includes("argument missing")
      ? `option ${option} needs a value`
      : `option ${option} takes no value`;
  }
  return message.split(". ")[0];
}

async function uploadCommand(context: Context, [file, name]: string[]): Promise<void> {
  const { client, values, print } = context;
  const action = `Cannot upload image ${JSON.stringify(name)}`;
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(file);
  } catch (cause) {
    throw new Error(`${action}: cannot open ${file}: ${fileErrorText(cause)}`, { cause });
  }
  if (stat.isDirectory) throw new Error(`${action}: ${file} is a directory`);
  // A pipe or a device may report size 0: its length is then unknown, not zero.
  const totalBytes = stat.isFile ? stat.size : null;
  if (totalBytes === 0) throw new Error(`${action}: ${file} is empty`);

  const progress = Deno.stderr.isTerminal()
    ? new UploadProgress({
      name,
      totalBytes,
      // A short timeout: a slow poll must not hold the bar (or the exit) back.
      poll: () => client.uploads({ timeoutMs: pollTimeoutMs }),
      write: writeStderr,
      width: terminalWidth,
    })
    : null;
  const startMs = performance.now();
  progress?.start();
  let result;
  try {
    result = await client.uploadImage(file, name, (sentBytes) => progress?.sent(sentBytes));
  } finally {
    await progress?.stop();
  }
  print(values.json ? toJson(result) : renderSummary(result, performance.now() - startMs));
}

async function createVolume(context: Context, [name]: string[]): Promise<void> {
  const { client, values, print } = context;
  const given = (["image", "snapshot", "size"] as const).filter((key) => values[key] !== undefined);
  if (given.length !== 1) {
    const usage = `usage: atoll volume create ${commands["volume create"].synopsis}`;
    throw new UsageError(
      `volume create: give exactly one of --image, --snapshot, --size (${usage})`,
    );
  }
  let source;
  if (values.image !== undefined) source = { image: values.image };
  else if (values.snapshot !== undefined) {
    parseReference(values.snapshot, "volume create --snapshot");
    source = { snapshot: values.snapshot };
  } else {
    try {
      source = { size: parseSize(values.size!) };
    } catch (error) {
      throw new UsageError(`volume create: ${(error as Error).message}`);
    }
  }
  const volume = await client.createVolume(name, source);
  print(values.json ? toJson(volume) : volumeLines(volume));
}

/** Splits `VOLUME@SNAPSHOT`; the node validates the names themselves. */
function parseReference(reference: string, where: string): { volume: string; snapshot: string } {
  const parts = reference.split("@");
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
    throw new UsageError(`${where}: expected VOLUME@SNAPSHOT, got ${JSON.stringify(reference)}`);
  }
  return { volume: parts[0], snapshot: parts[1] };
}

/** `--node`, else `ATOLL_NODE`, else the default; `http://` is implied when no scheme is given. */
function nodeUrl(values: Values): string {
  const given = values.node ?? env("ATOLL_NODE") ?? nodeUrlDefault;
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? given : `http://${given}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`node address ${JSON.stringify(given)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`node address ${JSON.stringify(given)} is not an http(s) URL`);
  }
  return url.href.replace(/\/+$/, "");
}

/** The token from `--token-file`, else from `ATOLL_TOKEN`, else none. */
async function token(values: Values): Promise<string | null> {
  const path = values["token-file"];
  if (path === undefined) return env("ATOLL_TOKEN")?.trim() || null;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (cause) {
    throw new Error(`Cannot read token file ${path}: ${fileErrorText(cause)}`, { cause });
  }
  if (text.trim() === "") throw new Error(`Cannot use token file ${path}: it is empty`);
  return text.trim();
}

/** A file system error without Deno's trailing syscall and path. */
function fileErrorText(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // No --allow-env: behave as if unset.
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

function writeStderr(text: string): void {
  const bytes = new TextEncoder().encode(text);
  for (let written = 0; written < bytes.length;) {
    written += Deno.stderr.writeSync(bytes.subarray(written));
  }
}

function terminalWidth(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}
