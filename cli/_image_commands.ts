/** The `atoll image` subcommands: upload (with its progress bar), ls, info, rm. */
import { renderSummary, terminalWidth, UploadProgress, writeStderr } from "./progress.ts";
import { formatSize } from "./size.ts";
import { formatTime, keyValues, sizeWithBytes, toJson } from "./format.ts";
import type { CommandContext, CommandSpec } from "./_command_line.ts";
import { fileErrorText } from "./_connection.ts";
import { listCommand } from "./_list_command.ts";

const pollTimeoutMs = 2000;

/** The image commands, by their words. */
export const imageCommands: Record<string, CommandSpec> = {
  "image upload": { operands: ["FILE", "NAME"], run: uploadCommand },
  "image ls": listCommand({
    operands: [],
    fetch: (client) => client.listImages(),
    headers: ["NAME", "SIZE", "BLOCKS", "ZERO", "CREATED"],
    row: (image) => [
      image.name,
      formatSize(image.size),
      String(image.blocks),
      String(image.zeroBlocks),
      formatTime(image.createdAt),
    ],
    right: [1, 2, 3],
  }),
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
};

async function uploadCommand(context: CommandContext, [file, name]: string[]): Promise<void> {
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
