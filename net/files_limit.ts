/**
 * The process's open-files limit (RLIMIT_NOFILE), raised to its hard limit at
 * start: every connection and every open block file costs a descriptor, and
 * the listeners' caps are sized from what is left.
 *
 * Deno has no setrlimit. The deno binary already raises its soft limit to the
 * hard one when it starts; where it did not (a build that does not, a
 * launcher that lowered it after), `prlimit` from util-linux, present on
 * every Debian host, raises it on this process's pid. The limit then in force
 * is read back from /proc/self/limits, so the caps never assume a raise that
 * did not happen.
 */

/** The open-files limit in force, and what was done to it. */
export interface FilesLimit {
  /** The soft limit now: the most descriptors this process may hold. */
  soft: number;
  /** The hard limit: the most the soft limit may be raised to without privileges. */
  hard: number;
  /** The soft limit found at start when it was raised, else null. */
  raisedFrom: number | null;
  /** Why it could not be raised or read, when so (for the start line). */
  note: string | null;
}

/** Used when /proc/self/limits cannot be read (not Linux): the common default. */
const softLimitAssumed = 1024;

/** Raises the soft open-files limit to the hard one if it is below, and says what is in force. */
export async function raiseFilesLimit(): Promise<FilesLimit> {
  const found = await readFilesLimit();
  if (found === null) {
    return {
      soft: softLimitAssumed,
      hard: softLimitAssumed,
      raisedFrom: null,
      note: `cannot read /proc/self/limits; assuming ${softLimitAssumed}`,
    };
  }
  if (found.soft >= found.hard) return { ...found, raisedFrom: null, note: null };
  let note: string | null = null;
  try {
    const output = await new Deno.Command("prlimit", {
      args: [`--pid=${Deno.pid}`, `--nofile=${found.hard}:${found.hard}`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!output.success) note = `prlimit failed: ${new TextDecoder().decode(output.stderr).trim()}`;
  } catch (error) {
    note = `cannot run prlimit: ${error instanceof Error ? error.message : error}`;
  }
  const now = await readFilesLimit() ?? found;
  return { ...now, raisedFrom: now.soft > found.soft ? found.soft : null, note };
}

/** The soft and hard open-files limits from /proc/self/limits; null when unreadable. */
export async function readFilesLimit(): Promise<{ soft: number; hard: number } | null> {
  let text: string;
  try {
    text = await Deno.readTextFile("/proc/self/limits");
  } catch {
    return null;
  }
  return parseFilesLimit(text);
}

/** The "Max open files" line of a /proc/PID/limits text; null when absent. */
export function parseFilesLimit(text: string): { soft: number; hard: number } | null {
  const match = text.match(/^Max open files\s+(\S+)\s+(\S+)/m);
  if (match === null) return null;
  const number = (value: string) => value === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(value);
  const soft = number(match[1]);
  const hard = number(match[2]);
  if (!Number.isSafeInteger(soft) || !Number.isSafeInteger(hard)) return null;
  return { soft, hard };
}

/** Whether `error` says the process or the system ran out of file descriptors. */
export function isFilesExhausted(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return code === "EMFILE" || code === "ENFILE" || /too many open files/i.test(error.message);
}

/**
 * Keeps the process up when descriptors run out where nobody handles it (a
 * promise nobody awaits, a library's background task): such an error is given
 * to `log` and absorbed, where Deno would end the process. Any other uncaught
 * error still ends it: that is a bug, not an operating condition.
 */
export function surviveFilesExhaustion(log: (error: Error) => void): void {
  globalThis.addEventListener("unhandledrejection", (event) => {
    if (!isFilesExhausted(event.reason)) return;
    event.preventDefault();
    log(event.reason as Error);
  });
  globalThis.addEventListener("error", (event) => {
    if (!isFilesExhausted(event.error)) return;
    event.preventDefault();
    log(event.error as Error);
  });
}
