/**
 * The node's log: one line per event, as readable text or JSON lines
 * (`--log-format`), at or above a level (`--log-level`), each with its time,
 * level, component and the ids it is about (volume, image, peer, request) as
 * properties. LogTape does the levels, formatting and sinks; a component takes
 * `logger("nbd")` once and logs with a message template whose placeholders
 * name its properties: `log.info("opened {export} for {client}", {...})`.
 * Until `configureLogging` runs (in-process tests, library use) nothing is
 * written.
 *
 * @module
 */
import {
  configureSync,
  getJsonLinesFormatter,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogLevel,
  type LogRecord,
  withFilter,
} from "@logtape/logtape";
import { recentEvents } from "./events.ts";

export type { Logger, LogLevel };
export { eventComponents, eventsMax, type NodeEvent, recentEvents } from "./events.ts";

/** How lines are written: `text` for people, `json` (one object per line) for collectors. */
export type LogFormat = "text" | "json";
/** The formats `--log-format` accepts. */
export const logFormats: readonly LogFormat[] = ["text", "json"];
/** The levels `--log-level` accepts, most verbose first. */
export const logLevels: readonly LogLevel[] = ["debug", "info", "warning", "error"];

/** Options of {@linkcode configureLogging}. */
export interface LoggingOptions {
  format: LogFormat;
  level: LogLevel;
  /** Where lines go; standard error unless told (a test collects them). */
  write?: (line: string) => void;
}

const encoder = new TextEncoder();

/**
 * Sets where and how every component's lines go, replacing any earlier
 * setting; also feeds the ring of recent events (events.ts), which takes its
 * components' `info` lines whatever `level` says.
 */
export function configureLogging(options: LoggingOptions): void {
  const write = options.write ?? ((line: string) => Deno.stderr.writeSync(encoder.encode(line)));
  const format: (record: LogRecord) => string = options.format === "json"
    ? getJsonLinesFormatter({ properties: "flatten" })
    : getTextFormatter({
      timestamp: "rfc3339",
      level: "FULL",
      category: ".",
      value: (value) => typeof value === "string" ? value : Deno.inspect(value),
    });
  configureSync({
    reset: true,
    sinks: {
      out: withFilter((record) => write(format(record)), options.level),
      events: recentEvents.sink,
    },
    loggers: [
      {
        category: ["atoll"],
        lowestLevel: moreVerbose(options.level, "info"),
        sinks: ["out", "events"],
      },
      // LogTape's own trouble (a sink that throws) is worth a line, its chatter is not.
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["out"] },
    ],
  });
}

function moreVerbose(a: LogLevel, b: LogLevel): LogLevel {
  return logLevels.indexOf(a) <= logLevels.indexOf(b) ? a : b;
}

/** The logger of a component (`nbd`, `http`, `leases`, ...): lines say `atoll.COMPONENT`. */
export function logger(component: string): Logger {
  return getLogger(["atoll", component]);
}

/** Parses `--log-format`; throws TypeError naming the choices. */
export function parseLogFormat(text: string): LogFormat {
  if ((logFormats as readonly string[]).includes(text)) return text as LogFormat;
  throw new TypeError(`--log-format must be one of ${logFormats.join(", ")}, not "${text}"`);
}

/** Parses `--log-level`; throws TypeError naming the choices. */
export function parseLogLevel(text: string): LogLevel {
  if ((logLevels as readonly string[]).includes(text)) return text as LogLevel;
  throw new TypeError(`--log-level must be one of ${logLevels.join(", ")}, not "${text}"`);
}
