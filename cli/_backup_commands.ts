/**
 * The `atoll backup` subcommands: push, ls, restore, prune. The node does the
 * work (with the S3 credentials of its environment); push and restore stream
 * their progress as JSON lines, drawn as a bar on a terminal.
 */
import { ApiError, type AtollClient } from "./client.ts";
import { formatTime, toJson } from "./format.ts";
import { renderProgress, terminalWidth, writeStderr } from "./progress.ts";
import { formatSize } from "./size.ts";
import type { CommandContext, CommandSpec } from "./_command_line.ts";
import { listCommand } from "./_list_command.ts";

/** The counters a push or restore streams (backup/push.ts TransferProgress). */
interface TransferProgress {
  totalBlocks: number;
  totalBytes: number;
  doneBlocks: number;
  doneBytes: number;
  sentBlocks: number;
  sentBytes: number;
  prunePauses: number;
}

/** One backup, as `GET /v1/backups` lists it. */
interface BackupInfo {
  name: string;
  volume: string;
  snapshot: string;
  createdAt: string;
  sizeBytes: number;
  dataBlocks: number;
  dataBytes: number;
}

/** The backup commands, by their words. */
export const backupCommands: Record<string, CommandSpec> = {
  "backup push": {
    operands: ["VOLUME@SNAPSHOT", "s3://BUCKET/PREFIX"],
    options: ["name"],
    synopsis: "VOLUME@SNAPSHOT s3://BUCKET/PREFIX [--name NAME]",
    run: async (context, [snapshot, target]) => {
      const action = `Cannot push backup of ${snapshot}`;
      const body = { snapshot, target, name: context.values.name };
      const result = await streamed(context, action, "/v1/backups", body, snapshot) as
        & BackupInfo
        & TransferProgress
        & { created: boolean };
      if (context.values.json) return context.print(toJson(result));
      const there = result.totalBlocks - result.sentBlocks;
      context.print(
        result.created
          ? `Pushed backup ${JSON.stringify(result.name)} to ${target}: ` +
            `${result.totalBlocks} blocks (${formatSize(result.totalBytes)}), ` +
            `${result.sentBlocks} sent (${formatSize(result.sentBytes)}, map pages included), ` +
            `${Math.max(0, there)} already there`
          : `Backup ${JSON.stringify(result.name)} is in ${target} already: nothing sent`,
      );
    },
  },
  "backup ls": listCommand<BackupInfo>({
    operands: ["s3://BUCKET/PREFIX"],
    fetch: (client, [target]) => listBackups(client, target),
    headers: ["NAME", "VOLUME", "SNAPSHOT", "SIZE", "DATA", "BLOCKS", "CREATED"],
    row: (backup) => [
      backup.name,
      backup.volume,
      backup.snapshot,
      formatSize(backup.sizeBytes),
      formatSize(backup.dataBytes),
      String(backup.dataBlocks),
      formatTime(backup.createdAt),
    ],
    right: [3, 4, 5],
  }),
  "backup restore": {
    operands: ["s3://BUCKET/PREFIX/BACKUP", "NAME"],
    run: async (context, [backup, image]) => {
      const action = `Cannot restore ${backup}`;
      const result = await streamed(
        context,
        action,
        "/v1/backups/restore",
        { backup, image },
        image,
      );
      if (context.values.json) return context.print(toJson(result));
      const { name, size } = result as { name: string; size: number };
      context.print(`Restored ${backup} as image ${JSON.stringify(name)} (${formatSize(size)})`);
    },
  },
  "backup prune": {
    operands: ["s3://BUCKET/PREFIX"],
    options: ["remove", "keep-last"],
    synopsis: "s3://BUCKET/PREFIX [--remove NAME,...] [--keep-last N]",
    run: async ({ client, values, print }, [target]) => {
      const remove = values.remove?.split(",").filter((name) => name !== "") ?? [];
      const keepLast = values["keep-last"] === undefined ? undefined : Number(values["keep-last"]);
      const response = await client.call(`Cannot prune ${target}`, "POST", "/v1/backups/prune", {
        target,
        remove,
        keepLast,
      });
      const result = await response.json();
      if (values.json) return print(toJson(result));
      print(
        `Pruned ${target}: removed ${result.removedBackups.length} backups ` +
          `(${result.keptBackups} kept); deleted ${result.deletedBlocks} blocks ` +
          `(${formatSize(result.deletedBytes)}), kept ${result.keptBlocks}`,
      );
    },
  },
};

async function listBackups(client: AtollClient, target: string): Promise<BackupInfo[]> {
  const path = `/v1/backups?target=${encodeURIComponent(target)}`;
  const response = await client.call(`Cannot list backups in ${target}`, "GET", path);
  return await response.json();
}

/** Runs a streamed call, drawing its progress on a terminal; returns its result. */
async function streamed(
  context: CommandContext,
  action: string,
  path: string,
  body: unknown,
  label: string,
): Promise<unknown> {
  const startMs = performance.now();
  const response = await context.client.call(action, "POST", path, body);
  const terminal = Deno.stderr.isTerminal();
  try {
    for await (const line of lines(response.body!)) {
      const message = JSON.parse(line);
      if ("result" in message) return message.result;
      if ("error" in message) throw new ApiError(`${action}: ${message.error}`, message.status);
      if (terminal && "progress" in message) {
        drawProgress(label, message.progress, performance.now() - startMs);
      }
    }
  } finally {
    if (terminal) writeStderr("\r\x1b[K");
  }
  throw new Error(`${action}: the node's answer ended before its result`);
}

function drawProgress(name: string, progress: TransferProgress, elapsedMs: number): void {
  const node = {
    blocks: progress.doneBlocks,
    zeroBlocks: 0,
    newBlocks: Math.min(progress.doneBlocks, progress.sentBlocks),
  };
  const state = {
    name,
    sentBytes: progress.doneBytes,
    totalBytes: progress.totalBytes,
    elapsedMs,
    node,
  };
  writeStderr("\r" + renderProgress(state, terminalWidth()) + "\x1b[K");
}

/** The lines of a streamed body. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncIterable<string> {
  let buffered = "";
  for await (const text of body.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    for (let at = buffered.indexOf("\n"); at >= 0; at = buffered.indexOf("\n")) {
      const line = buffered.slice(0, at).trim();
      buffered = buffered.slice(at + 1);
      if (line !== "") yield line;
    }
  }
  if (buffered.trim() !== "") yield buffered.trim();
}
