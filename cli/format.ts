/** How the client subcommands print what a node answers: tables and key: value lines. */
import type { SnapshotInfo, VolumeInfo } from "./client.ts";
import { formatSize } from "./size.ts";

export function volumeLines(volume: VolumeInfo): string {
  return keyValues([
    ["name", volume.name],
    ["size", sizeWithBytes(volume.size)],
    ["block size", formatSize(volume.blockSize)],
    ["origin", formatOrigin(volume)],
    ["allocated", `${volume.allocatedBlocks} of ${blockCount(volume)} blocks`],
    ["created", formatTime(volume.createdAt)],
    ...(volume.lease === undefined ? [] : [[
      "lease",
      volume.lease.holder === null
        ? `free (epoch ${volume.lease.epoch})`
        : `${volume.lease.holder} (epoch ${volume.lease.epoch})${
          (volume as { heldHere?: boolean }).heldHere ? ", this node" : ""
        }`,
    ] as [string, string]]),
  ]);
}

export function snapshotLines(snapshot: SnapshotInfo): string {
  return keyValues([
    ["snapshot", `${snapshot.volume}@${snapshot.name}`],
    ["size", sizeWithBytes(snapshot.size)],
    ["block size", formatSize(snapshot.blockSize)],
    ["created", formatTime(snapshot.createdAt)],
  ]);
}

export function formatOrigin({ origin }: Pick<VolumeInfo, "origin">): string {
  if (origin.kind === "image") return `image ${origin.image}`;
  if (origin.kind === "snapshot") return `snapshot ${origin.volume}@${origin.snapshot}`;
  if (origin.kind === "flattened") {
    return `none (flattened from ${formatOrigin({ origin: origin.from })})`;
  }
  return "empty";
}

export function blockCount(volume: { size: number; blockSize: number }): number {
  return Math.ceil(volume.size / volume.blockSize);
}

export function sizeWithBytes(bytes: number): string {
  return bytes < 1024 ? formatSize(bytes) : `${formatSize(bytes)} (${bytes} bytes)`;
}

/** An ISO time to the second: milliseconds only clutter a table. */
export function formatTime(iso: string): string {
  return iso.replace(/\.\d+Z$/, "Z");
}

export function sortByName<T extends { name: string }>(items: T[]): T[] {
  return items.toSorted((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

export function toJson(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/** `key: value` lines with the values aligned. */
export function keyValues(pairs: [string, string][]): string {
  const width = Math.max(...pairs.map(([key]) => key.length)) + 2;
  return pairs.map(([key, value]) => `${key}:`.padEnd(width) + value).join("\n");
}

/** An aligned table; the columns listed in `right` (numbers) are right-aligned. */
export function table(headers: string[], rows: string[][], right: number[] = []): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => row[column].length))
  );
  const line = (cells: string[]) =>
    cells.map((cell, column) =>
      right.includes(column) ? cell.padStart(widths[column]) : cell.padEnd(widths[column])
    ).join("  ").trimEnd();
  return [headers, ...rows].map(line).join("\n");
}
