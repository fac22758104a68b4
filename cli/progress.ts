/**
 * The progress of `atoll image upload` (and `backup push`): a one-line bar redrawn in place on a
 * terminal, and a summary line at the end. Rendering is pure (state and width
 * in, text out); {@linkcode UploadProgress} owns the timers and the polling.
 *
 * "Dedup" is the share of the non-zero blocks processed so far that the node
 * already had (from this image or another): 1 - newBlocks / (blocks - zeroBlocks).
 * Zero blocks are counted apart because they are never stored at all.
 */
import type { UploadResult, UploadStatus } from "./client.ts";
import { formatSize } from "./size.ts";

/** What the bar shows. */
export interface ProgressState {
  name: string;
  /** Bytes handed to the connection so far. */
  sentBytes: number;
  /** Size of the file, null when unknown (a pipe or a device). */
  totalBytes: number | null;
  elapsedMs: number;
  /** The node's counters of this upload at the last poll, null before the first answer. */
  node: Pick<UploadStatus, "blocks" | "zeroBlocks" | "newBlocks"> | null;
}

const barWidthMin = 10;
const barWidthMax = 50;
const nameWidthMax = 24;

/** Share of non-zero blocks already stored, 0..1, or null when none was processed yet. */
export function dedupRatio(counts: { blocks: number; zeroBlocks: number; newBlocks: number }) {
  const dataBlocks = counts.blocks - counts.zeroBlocks;
  if (dataBlocks <= 0) return null;
  return Math.min(1, Math.max(0, 1 - counts.newBlocks / dataBlocks));
}

/**
 * One line of progress, at most `width - 1` characters (the last column is left
 * free so that a terminal never wraps it). Fields that do not fit are dropped:
 * first the bar, then the ETA, then the rate; a line still too long is cut.
 *
 * @example
 * ```ts
 * renderProgress({ name: "debian", sentBytes: 1 << 30, totalBytes: 2 << 30,
 *   elapsedMs: 8000, node: { blocks: 256, zeroBlocks: 6, newBlocks: 150 } }, 80);
 * // "debian [#######.......]   50%   1.0 GiB/2.0 GiB 128.0 MiB/s dedup 40% ETA 0:08"
 * ```
 */
export function renderProgress(state: ProgressState, width: number): string {
  const { sentBytes, totalBytes } = state;
  const name = state.name.length > nameWidthMax
    ? state.name.slice(0, nameWidthMax - 1) + "…"
    : state.name;
  const seconds = state.elapsedMs / 1000;
  const rate = seconds > 0 ? sentBytes / seconds : 0;
  const ratio = totalBytes ? Math.min(1, sentBytes / totalBytes) : null;
  const dedup = state.node === null ? null : dedupRatio(state.node);

  const amount = totalBytes === null
    ? formatSize(sentBytes)
    : `${formatSize(sentBytes).padStart(9)}/${formatSize(totalBytes)}`;
  const percent = ratio === null ? null : `${Math.floor(ratio * 100)}%`.padStart(4);
  const rateText = `${formatSize(rate)}/s`.padStart(11);
  // Fields keep a fixed width so that the bar does not jitter as their values change.
  const dedupText = `dedup ${(dedup === null ? "--" : `${Math.round(dedup * 100)}%`).padStart(3)}`;
  let etaText: string | null = null;
  if (totalBytes !== null && sentBytes >= totalBytes) etaText = "finishing";
  else if (totalBytes !== null) {
    etaText = `ETA ${rate > 0 ? formatDuration((totalBytes - sentBytes) / rate) : "--:--"}`;
  }
  etaText = etaText?.padEnd(9) ?? null;

  const available = Math.max(0, width - 1);
  const tailOf = (fields: (string | null)[]) => fields.filter((field) => field !== null).join(" ");
  const full = [percent, amount, rateText, dedupText, etaText];
  const barWidth = available - name.length - tailOf(full).length - 3;
  if (ratio !== null && barWidth >= barWidthMin) {
    return `${name} ${bar(ratio, Math.min(barWidth, barWidthMax))}  ${tailOf(full)}`.trimEnd();
  }
  let line = "";
  for (const fields of [full, full.slice(0, 4), [percent, amount, dedupText]]) {
    line = `${name}  ${tailOf(fields)}`.trimEnd();
    if (line.length <= available) return line;
  }
  return line.slice(0, available);
}

function bar(ratio: number, width: number): string {
  const inner = width - 2;
  const filled = Math.round(ratio * inner);
  return `[${"#".repeat(filled)}${".".repeat(inner - filled)}]`;
}

/** Seconds as `m:ss`, or `h:mm:ss` from an hour up. */
export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor(total / 60) % 60;
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/**
 * The line printed when an upload is done: size, time, rate and what the node
 * stored.
 *
 * @example
 * ```ts
 * // Uploaded image "debian": 13.0 MiB in 0.4 s (32.5 MiB/s); 4 blocks:
 * //   2 new (5.0 MiB stored), 1 already stored, 1 zero; dedup 33%
 * ```
 */
export function renderSummary(result: UploadResult, elapsedMs: number): string {
  const seconds = elapsedMs / 1000;
  const rate = seconds > 0 ? formatSize(result.size / seconds) + "/s" : "-";
  const known = result.blocks - result.zeroBlocks - result.newBlocks;
  const dedup = dedupRatio(result);
  const head = result.created
    ? `Uploaded image ${JSON.stringify(result.name)}`
    : `Uploaded image ${JSON.stringify(result.name)} (unchanged: the node had the same content)`;
  return `${head}: ${formatSize(result.size)} in ${seconds.toFixed(1)} s (${rate}); ` +
    `${result.blocks} blocks: ${result.newBlocks} new (${formatSize(result.newBytes)} stored), ` +
    `${known} already stored, ${result.zeroBlocks} zero; ` +
    `dedup ${dedup === null ? "--" : `${Math.round(dedup * 100)}%`}`;
}

/** Options of {@linkcode UploadProgress}. */
export interface UploadProgressOptions {
  name: string;
  totalBytes: number | null;
  /** Asks the node for its uploads under way (`GET /v1/uploads`). */
  poll: () => Promise<UploadStatus[]>;
  /** Writes to the terminal, without a newline. */
  write: (text: string) => void;
  /** Columns of the terminal. */
  width: () => number;
  now?: () => number;
  redrawIntervalMs?: number;
  pollIntervalMs?: number;
}

/**
 * Draws the bar of one upload in place until {@linkcode UploadProgress.stop},
 * at most once per `redrawIntervalMs` (100 ms), and polls the node every
 * `pollIntervalMs` (500 ms) for its dedup so far. A failed poll is ignored: the
 * bar is a courtesy, the upload is what matters.
 */
export class UploadProgress {
  #state: ProgressState;
  #options: UploadProgressOptions;
  #now: () => number;
  #startMs: number;
  #redrawTimer: ReturnType<typeof setInterval> | undefined;
  #pollTimer: ReturnType<typeof setTimeout> | undefined;
  #polling: Promise<void> | null = null;
  #stopped = false;

  constructor(options: UploadProgressOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    this.#startMs = this.#now();
    this.#state = {
      name: options.name,
      sentBytes: 0,
      totalBytes: options.totalBytes,
      elapsedMs: 0,
      node: null,
    };
  }

  /** Starts drawing and polling. */
  start(): void {
    this.#draw();
    this.#redrawTimer = setInterval(() => this.#draw(), this.#options.redrawIntervalMs ?? 100);
    this.#schedulePoll();
  }

  /** Records the bytes sent so far; the next redraw shows them. */
  sent(sentBytes: number): void {
    this.#state.sentBytes = sentBytes;
  }

  /** Stops the timers and erases the bar, leaving the cursor at the start of the line. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#redrawTimer);
    clearTimeout(this.#pollTimer);
    await this.#polling;
    this.#options.write("\r\x1b[K");
  }

  #draw(): void {
    if (this.#stopped) return;
    this.#state.elapsedMs = this.#now() - this.#startMs;
    this.#options.write(`\r${renderProgress(this.#state, this.#options.width())}\x1b[K`);
  }

  #schedulePoll(): void {
    this.#pollTimer = setTimeout(() => {
      this.#polling = this.#poll().finally(() => {
        this.#polling = null;
        if (!this.#stopped) this.#schedulePoll();
      });
    }, this.#options.pollIntervalMs ?? 500);
  }

  async #poll(): Promise<void> {
    try {
      const uploads = await this.#options.poll();
      const mine = uploads.find((upload) => upload.name === this.#state.name);
      if (mine !== undefined) this.#state.node = mine;
    } catch { /* the next poll may work; the upload itself reports real failures */ }
  }
}

/** Writes `text` to stderr whole (progress lines go there, results to stdout). */
export function writeStderr(text: string): void {
  const bytes = new TextEncoder().encode(text);
  for (let written = 0; written < bytes.length;) {
    written += Deno.stderr.writeSync(bytes.subarray(written));
  }
}

/** The terminal's width in columns (80 when stderr is not a terminal). */
export function terminalWidth(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}
