/**
 * The I/O limit options of `volume create` and `volume qos`: `--iops`,
 * `--iops-read`, `--iops-write` (requests per second) and `--bps`,
 * `--bps-read`, `--bps-write` (bytes per second, with K, M, G suffixes), each
 * `RATE` or `RATE:BURST`, or `off` to remove that limit (`volume qos`).
 */
import type { VolumeQos } from "./client.ts";
import { formatSize, parseSize } from "./size.ts";
import { UsageError, type Values } from "./_command_line.ts";

/** The option of each rate, and the key the API knows it by. */
const rateOptions = [
  ["iops", "iops"],
  ["iops-read", "iopsRead"],
  ["iops-write", "iopsWrite"],
  ["bps", "bps"],
  ["bps-read", "bpsRead"],
  ["bps-write", "bpsWrite"],
] as const;

/** The limit options, for a command's `options`. */
export const qosOptionNames = rateOptions.map(([option]) => option);

/** Synopsis of the limit options. */
export const qosSynopsis = "[--iops[-read|-write] N[:BURST]] [--bps[-read|-write] SIZE[:BURST]]";

/**
 * The limits the options in `values` give, as a JSON merge patch of the API
 * (a key null for `off`); `where` names the command in usage errors.
 */
export function qosPatch(values: Values, where: string): Record<string, number | null> {
  const patch: Record<string, number | null> = {};
  for (const [option, key] of rateOptions) {
    const text = values[option];
    if (text === undefined) continue;
    if (text === "off") {
      patch[key] = null;
      continue;
    }
    const [rate, burst, extra] = text.split(":");
    if (extra !== undefined || rate === "" || burst === "") {
      throw new UsageError(`${where}: --${option} takes RATE or RATE:BURST, or off`);
    }
    patch[key] = amount(rate, option, where);
    if (burst !== undefined) patch[`${key}Burst`] = amount(burst, option, where);
  }
  return patch;
}

/** A count (IOPS: a plain integer) or a size (bandwidth: `100M`). */
function amount(text: string, option: string, where: string): number {
  if (option.startsWith("iops")) {
    if (!/^\d+$/.test(text)) {
      throw new UsageError(`${where}: --${option} takes a whole number of I/Os, not "${text}"`);
    }
    return Number(text);
  }
  try {
    return parseSize(text);
  } catch (error) {
    throw new UsageError(`${where}: --${option}: ${(error as Error).message}`);
  }
}

/** The limits as one line: `iops 500 (burst 50), bps 100.0 MiB/s`; `none` without any. */
export function formatQos(qos: VolumeQos | undefined): string {
  const parts: string[] = [];
  for (const [option, key] of rateOptions) {
    const rate = qos?.[key];
    if (rate === undefined) continue;
    const burst = qos?.[`${key}Burst`];
    const iops = option.startsWith("iops");
    const shown = iops ? String(rate) : `${formatSize(rate)}/s`;
    const burstShown = burst === undefined ? "" : ` (burst ${iops ? burst : formatSize(burst)})`;
    parts.push(`${option} ${shown}${burstShown}`);
  }
  return parts.length === 0 ? "none" : parts.join(", ");
}
