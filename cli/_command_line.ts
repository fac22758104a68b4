/**
 * The command line of the client subcommands: the options they take, the shape
 * of one command, and the parse that checks a command line against them.
 */
import { parseArgs } from "node:util";
import type { AtollClient } from "./client.ts";

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
  force: { type: "boolean" },
  since: { type: "string" },
  until: { type: "string" },
  // I/O limits (_qos_options.ts)
  iops: { type: "string" },
  "iops-read": { type: "string" },
  "iops-write": { type: "string" },
  bps: { type: "string" },
  "bps-read": { type: "string" },
  "bps-write": { type: "string" },
  clear: { type: "boolean" },
  name: { type: "string" },
  remove: { type: "string" },
  "keep-last": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;
const globalOptions = new Set(["node", "token-file", "json", "help"]);

/** The options given, by name. */
export type Values = {
  [K in keyof typeof optionSpecs]?: (typeof optionSpecs)[K]["type"] extends "string" ? string
    : boolean;
};

/** What a command runs with. */
export interface CommandContext {
  client: AtollClient;
  values: Values;
  /** Prints one line (or a block of lines) on stdout. */
  print: (text: string) => void;
}

/** One client subcommand. */
export interface CommandSpec {
  /** Positional arguments after the command words, as the usage names them. */
  operands: string[];
  /** Options other than the global ones that this command takes. */
  options?: (keyof typeof optionSpecs)[];
  /** What usage errors show after the command words, when more than the operands. */
  synopsis?: string;
  run: (context: CommandContext, operands: string[]) => Promise<void>;
}

/**
 * Parses and checks the command line against `commands` (by their words,
 * `GROUP VERB`); `spec` is null when help was asked for, and `help` is then
 * the usage of the command named (`atoll volume create --help`), if any.
 */
export function parseCommandLine(args: string[], commands: Record<string, CommandSpec>) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: optionSpecs, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(parseArgsMessage(error));
  }
  const values = parsed.values as Values;
  if (values.help) {
    const [group, verb] = parsed.positionals;
    const spec = commands[`${group} ${verb}`];
    const help = spec === undefined
      ? null
      : `usage: atoll ${group} ${verb} ${spec.synopsis ?? spec.operands.join(" ")}`.trimEnd();
    return { spec: null, help, group: group ?? null, operands: [], values };
  }
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

/**
 * node:util's parse errors, reworded to name the flag without its long advice;
 * `help` is the command whose help an unknown option points to.
 */
export function parseArgsMessage(error: unknown, help = "atoll --help"): string {
  const message = error instanceof Error ? error.message : String(error);
  const option = message.match(/'(-[^' ]+)/)?.[1] ?? "";
  const code = (error as { code?: string }).code;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    return `unknown option ${option} (see ${help})`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    return message.includes("argument missing")
      ? `option ${option} needs a value`
      : `option ${option} takes no value`;
  }
  return message.split(". ")[0];
}
