/**
 * The settings of `atoll serve` from its four sources, each option taken from
 * the first that gives it: the command line (`--data DIR`), the environment
 * (`ATOLL_DATA`), the config file (`data = "DIR"` in TOML, `--config FILE` or
 * `ATOLL_CONFIG`), then the default. Every source is read against the one
 * table of options (serve_flags.ts), and a refused value names its source:
 * `Cannot use replicas = 12 in config file /etc/atoll/atoll.toml: expected a
 * whole number in [1, 9]`.
 */
import { parseArgs } from "node:util";
import { parse as parseToml, TomlError } from "smol-toml";
import { fileErrorText } from "./_connection.ts";
import { parseArgsMessage, UsageError } from "./_command_line.ts";
import {
  envName,
  type FlagKind,
  type ServeFlag,
  type ServeFlagName,
  serveFlags,
  type ServeSettings,
} from "./serve_flags.ts";

/** Where the settings come from besides the defaults. */
export interface SettingsSources {
  /** The command line after `serve`. */
  args: string[];
  /** The environment (`Deno.env.toObject()`). */
  env: Record<string, string>;
}

/** Settings to serve with, and remarks about the sources worth a log line. */
export interface Resolved {
  settings: ServeSettings;
  /** E.g. an `ATOLL_` variable that names no option (a typo, likely). */
  warnings: string[];
}

type Value = string | number | string[];
type AnyFlag = ServeFlag<Value | null>;

const names = Object.keys(serveFlags) as ServeFlagName[];
/** Variables of the client subcommands, which `serve` ignores without a warning. */
const clientVariables = new Set(["ATOLL_NODE", "ATOLL_TOKEN"]);

/** Resolves every option; null when `--help` was asked for. Throws UsageError on bad input. */
export async function resolveServeSettings(sources: SettingsSources): Promise<Resolved | null> {
  const flags = parseFlags(sources.args);
  if (flags.help) return null;
  const env = (name: string) => sources.env[name] || undefined;
  const configPath = flags.config ?? env("ATOLL_CONFIG") ?? null;
  const file = configPath === null ? {} : await readConfigFile(configPath);
  const settings: Record<string, Value | null> = {};
  for (const name of names) {
    const flag = serveFlags[name] as AnyFlag;
    const given = flags[name];
    const variable = env(envName(name));
    if (given !== undefined) settings[name] = fromText(flag, given, `--${name} ${given}`);
    else if (variable !== undefined) {
      settings[name] = fromText(flag, variable, `${envName(name)}=${variable}`);
    } else if (name in file) {
      const label = `${name} = ${JSON.stringify(file[name])} in config file ${configPath}`;
      settings[name] = checked(flag, fromToml(flag.kind, file[name], label), label);
    } else settings[name] = flag.default;
  }
  const known = new Set([
    ...names.map(envName),
    "ATOLL_CONFIG",
    "ATOLL_LIBRADOS",
    ...clientVariables,
  ]);
  const warnings = Object.keys(sources.env)
    .filter((name) => name.startsWith("ATOLL_") && !known.has(name))
    .map((name) => `environment variable ${name} names no serve option; ignored`);
  return { settings: settings as ServeSettings, warnings };
}

/** The command line's options by name; `help` is a boolean, every other a string. */
function parseFlags(args: string[]): { help?: boolean } & Record<string, string | undefined> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    config: { type: "string" },
    help: { type: "boolean", short: "h" },
  };
  for (const name of names) options[name] = { type: "string" };
  try {
    return parseArgs({ args, options, strict: true }).values as ReturnType<typeof parseFlags>;
  } catch (error) {
    throw new UsageError(parseArgsMessage(error, "atoll serve --help"));
  }
}

/** A value of the command line or the environment, as the option's kind. */
function fromText(flag: AnyFlag, text: string, label: string): Value {
  if (flag.kind === "text") return checked(flag, text, label);
  if (flag.kind === "list") {
    return checked(flag, text.split(",").map((item) => item.trim()).filter(Boolean), label);
  }
  const number = text.trim() === "" ? NaN : Number(text);
  if (Number.isNaN(number)) throw new UsageError(`Cannot use ${label}: expected a number`);
  return checked(flag, number, label);
}

/** A value of the config file, if it is of the option's kind. */
function fromToml(kind: FlagKind, value: unknown, label: string): Value {
  const isText = (item: unknown) => typeof item === "string";
  if (kind === "text" && isText(value)) return value as string;
  if (kind === "number" && typeof value === "number") return value;
  if (kind === "list" && Array.isArray(value) && value.every(isText)) return value as string[];
  const expected = { text: "a string", number: "a number", list: "a list of strings" }[kind];
  throw new UsageError(`Cannot use ${label}: expected ${expected}`);
}

function checked<T extends Value>(flag: AnyFlag, value: T, label: string): T {
  const why = flag.refuse(value);
  if (why !== null) throw new UsageError(`Cannot use ${label}: ${why}`);
  return value;
}

/** The config file's keys and values; its keys must be options' names. */
async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (cause) {
    throw new UsageError(`Cannot read config file ${path}: ${fileErrorText(cause)}`, { cause });
  }
  let table: Record<string, unknown>;
  try {
    table = parseToml(text);
  } catch (cause) {
    if (!(cause instanceof TomlError)) throw cause;
    const what = cause.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
    throw new UsageError(
      `Cannot read config file ${path}: ${what} (line ${cause.line}, column ${cause.column})`,
      { cause },
    );
  }
  for (const key of Object.keys(table)) {
    if (names.includes(key as ServeFlagName)) continue;
    const near = names.find((name) => name === key.toLowerCase().replaceAll("_", "-"));
    const hint = near === undefined
      ? `the keys are serve's flags: ${names.join(", ")}`
      : `did you mean "${near}"?`;
    throw new UsageError(`Cannot use config file ${path}: unknown key "${key}" (${hint})`);
  }
  return table;
}

/** `atoll serve --help`: the synopsis, then each option with its default. */
export function serveHelp(): string {
  const lines = [`usage:\n${serveSynopsis()}`, "", "options:"];
  const row = (left: string, help: string) => {
    // Help starts in column 30, on the option's line when it fits there.
    const words = help.split(" ");
    const out = left.length < 26 ? [`  ${left.padEnd(26)}  `] : [`  ${left}`, " ".repeat(30)];
    for (const word of words) {
      const line = out[out.length - 1];
      if (line.length > 30 && line.length + 1 + word.length > 100) out.push(" ".repeat(30));
      out[out.length - 1] += (out[out.length - 1].length > 30 ? " " : "") + word;
    }
    lines.push(...out);
  };
  row("--config FILE", "a TOML file of these options: NAME = value");
  for (const name of names) {
    const flag = serveFlags[name] as AnyFlag;
    const shown = flag.default === null || (Array.isArray(flag.default) && !flag.default.length)
      ? ""
      : ` (default ${flag.default})`;
    row(`--${name} ${flag.value}`, `${flag.help}${shown}`);
  }
  lines.push(
    "",
    "Each option may also be set in the environment as ATOLL_ and its name in capitals, _ for -",
    "(ATOLL_DATA, ATOLL_TOKEN_FILE, ATOLL_CONFIG), or in the config file under its own name",
    '(token-file = "/etc/atoll/token"). A flag wins over the environment, which wins over the file.',
    "See docs/operations.md.",
  );
  return lines.join("\n");
}

/** `  atoll serve [--data DIR] ...`, wrapped under 100 columns. */
export function serveSynopsis(): string {
  const words = [
    ...names.map((name) => `[--${name} ${serveFlags[name].value}]`),
    "[--config FILE]",
  ];
  const lines = ["  atoll serve"];
  for (const word of words) {
    if (lines[lines.length - 1].length + 1 + word.length > 100) lines.push(" ".repeat(13));
    lines[lines.length - 1] += ` ${word}`;
  }
  return lines.join("\n");
}
