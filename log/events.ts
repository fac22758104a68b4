/**
 * The node's recent events: a bounded ring of the log lines an operator
 * watches for on a dashboard (lease moves, member changes, collections,
 * healing passes, catalogue changes, and every warning or error), kept in
 * memory so that `GET /v1/events` can show them without a log collector.
 *
 * It is fed by the log itself (a LogTape sink that {@linkcode configureLogging}
 * installs), so every place that logs such an event feeds it, whatever
 * `--log-level` says: the ring takes its components at `info` and above even
 * when the log is quieter. A restart empties it.
 *
 * @module
 */
import type { LogRecord } from "@logtape/logtape";

/** Events the ring keeps; the oldest go first. */
export const eventsMax = 256;

/** Characters kept of an event's message and of each property (a stack can be long). */
export const eventTextMax = 1024;

/** Components whose `info` lines are events (others count from `warning`). */
export const eventComponents: readonly string[] = [
  "cluster",
  "gc",
  "healing",
  "leases",
  "node",
  "store",
];

/** One event as `GET /v1/events` shows it. */
export interface NodeEvent {
  /** Increases by one per event since the node started: `?after=` pages on it. */
  seq: number;
  /** ISO 8601 time of the event. */
  time: string;
  level: string;
  /** The log component (`leases`, `cluster`, `gc`, ...). */
  component: string;
  /** The line as the text log says it. */
  message: string;
  /** The ids and figures the line is about (volume, member, epoch...), as text or numbers. */
  properties: Record<string, string | number | boolean | null>;
}

/** A ring of the last {@linkcode eventsMax} events. */
export class EventRing {
  #events: NodeEvent[] = [];
  #seq = 0;

  /** The LogTape sink that feeds the ring (it picks the events from every record). */
  readonly sink = (record: LogRecord): void => {
    const component = record.category[1] ?? record.category[0] ?? "";
    const isEvent = record.level === "warning" || record.level === "error" ||
      record.level === "fatal" ||
      (record.level === "info" && eventComponents.includes(component));
    if (isEvent) this.add(component, record);
  };

  /** Adds one event from a log record. */
  add(component: string, record: LogRecord): void {
    this.#seq += 1;
    this.#events.push({
      seq: this.#seq,
      time: new Date(record.timestamp).toISOString(),
      level: record.level,
      component,
      message: clip(record.message.map(textOf).join("")),
      properties: plainProperties(record.properties),
    });
    if (this.#events.length > eventsMax) this.#events.shift();
  }

  /** The events after `seq` (all kept ones by default), oldest first. */
  after(seq = 0): NodeEvent[] {
    return this.#events.filter((event) => event.seq > seq);
  }
}

/** The process's ring, fed once the log is configured. */
export const recentEvents: EventRing = new EventRing();

function textOf(part: unknown): string {
  if (typeof part === "string") return part;
  if (part instanceof Error) return part.message;
  if (typeof part === "object" && part !== null) return JSON.stringify(part);
  return String(part);
}

function clip(text: string): string {
  return text.length <= eventTextMax ? text : `${text.slice(0, eventTextMax - 1)}…`;
}

/** Properties a browser can show: primitives as they are, the rest as text. */
function plainProperties(
  properties: Record<string, unknown>,
): Record<string, string | number | boolean | null> {
  const plain: Record<string, string | number | boolean | null> = {};
  for (const [key, value] of Object.entries(properties)) {
    plain[key] = value === null || typeof value === "number" || typeof value === "boolean"
      ? value
      : clip(textOf(value));
  }
  return plain;
}
