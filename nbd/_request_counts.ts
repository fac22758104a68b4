/**
 * What the transmission phase counts in /metrics: each request of a volume in
 * its figures (metrics/volume_stats.ts, allocation-free), and every error
 * reply by its NBD error name.
 */
import { nbdErrors, VolumeOperation, type VolumeStats } from "../metrics/mod.ts";
import { Command, NbdError, type Request } from "./protocol.ts";

/** The per-volume operation each command counts as; -1 for those not counted. */
const operationOfCommand = new Int8Array(Command.blockStatus + 1).fill(-1);
operationOfCommand[Command.read] = VolumeOperation.read;
operationOfCommand[Command.write] = VolumeOperation.write;
operationOfCommand[Command.flush] = VolumeOperation.flush;
operationOfCommand[Command.trim] = VolumeOperation.trim;
operationOfCommand[Command.writeZeroes] = VolumeOperation.zero;

/** The `error` label of each NBD error code, every one declared at zero in /metrics. */
const errorLabels = new Map<number, { error: string }>(
  Object.entries(NbdError).map(([name, code]) => [code, { error: `E${name.toUpperCase()}` }]),
);
for (const labels of errorLabels.values()) nbdErrors.inc(labels, 0);

/** Counts a finished request that started at `startedMs` (performance.now()). */
export function countRequest(stats: VolumeStats, request: Request, startedMs: number): void {
  const operation = operationOfCommand[request.type];
  if (!(operation >= 0)) return; // undefined past the table, -1 for uncounted commands
  const bytes = operation === VolumeOperation.flush ? 0 : request.length;
  stats.record(operation as VolumeOperation, bytes, (performance.now() - startedMs) / 1000);
}

/** Counts an error reply. */
export function countError(code: number): void {
  const labels = errorLabels.get(code);
  if (labels !== undefined) nbdErrors.inc(labels);
}
