/**
 * Validation of membership messages (messages.ts): {@linkcode parseMessage}
 * checks a decoded value once, at the edge, against the wire limits.
 *
 * @module
 */

import {
  addressBytesMax,
  counterMax,
  type GossipMessage,
  idBytesMax,
  type MemberDigest,
  type MemberInfo,
  membersMax,
  type Message,
  type PingMessage,
  type PingRequestMessage,
  type PushPullMessage,
  type Update,
  updatesPerMessageMax,
  zoneBytesMax,
} from "./messages.ts";

// Printable ASCII but `"` and `\`: a string's JSON is then its length + 2, which sizes
// datagrams without encoding them.
const printable = "[\\x21\\x23-\\x5b\\x5d-\\x7e]";
const idPattern = new RegExp(`^${printable}{1,${idBytesMax}}$`);
const addressPattern = new RegExp(`^${printable}{1,${addressBytesMax}}$`);
const zonePattern = new RegExp(`^${printable}{1,${zoneBytesMax}}$`);
const statuses: ReadonlySet<string> = new Set(["alive", "suspect", "dead", "left"]);

/**
 * Strings already found valid: ids and addresses repeat in every message, and a set lookup
 * is cheaper than a pattern. Bounded: a set that reaches this size is emptied.
 */
const validatedMax = 65_536;
const validIds = new Set<string>();
const validAddresses = new Set<string>();

function valid(value: unknown, pattern: RegExp, cache: Set<string>): value is string {
  if (typeof value !== "string") return false;
  if (cache.has(value)) return true;
  if (!pattern.test(value)) return false;
  if (cache.size >= validatedMax) cache.clear();
  cache.add(value);
  return true;
}

/** True when `value` may be a member id. */
export function isMemberId(value: unknown): value is string {
  return valid(value, idPattern, validIds);
}

/** True when `value` may be a member address. */
export function isAddress(value: unknown): value is string {
  return valid(value, addressPattern, validAddresses);
}

function isCounter(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 &&
    value <= counterMax;
}

/** True when `info` is a well-formed {@linkcode MemberInfo}. */
export function isMemberInfo(info: MemberInfo): boolean {
  return isMemberId(info.id) && isAddress(info.address) &&
    (info.zone === null || (typeof info.zone === "string" && zonePattern.test(info.zone))) &&
    typeof info.weight === "number" && Number.isFinite(info.weight) && info.weight >= 0;
}

type Loose = Record<string, unknown>;

function isObject(value: unknown): value is Loose {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isUpdate(value: unknown): value is Update {
  if (!isObject(value) || !isMemberId(value.id) || !isCounter(value.incarnation)) return false;
  switch (value.kind) {
    case "alive":
      return isMemberInfo(value as unknown as MemberInfo);
    case "suspect":
    case "dead":
      return isMemberId(value.from);
    case "left":
      return true;
    default:
      return false;
  }
}

function areUpdates(value: unknown): value is Update[] {
  return Array.isArray(value) && value.length <= updatesPerMessageMax && value.every(isUpdate);
}

function isDigest(value: unknown): value is MemberDigest {
  return isObject(value) && isMemberInfo(value as unknown as MemberInfo) &&
    isCounter(value.incarnation) && typeof value.status === "string" &&
    statuses.has(value.status);
}

/**
 * Returns `value` as a {@linkcode Message} when it is one, and `undefined` otherwise.
 * A node runs every decoded message through this once; inside, messages are trusted.
 * Fields beyond those of the type are allowed (a newer peer may add some) and ignored.
 */
export function parseMessage(value: unknown): Message | undefined {
  if (!isObject(value) || !isMemberId(value.source)) return undefined;
  const v = value;
  switch (v.type) {
    case "ping":
      return isCounter(v.seq) && isMemberId(v.target) && isAddress(v.replyTo) &&
          typeof v.stream === "boolean" && areUpdates(v.updates)
        ? v as unknown as PingMessage
        : undefined;
    case "ack":
    case "nack":
      return isCounter(v.seq) && areUpdates(v.updates) ? v as unknown as Message : undefined;
    case "ping-req":
      return isCounter(v.seq) && isMemberId(v.target) && isAddress(v.targetAddress) &&
          isAddress(v.replyTo) && areUpdates(v.updates)
        ? v as unknown as PingRequestMessage
        : undefined;
    case "gossip":
      return areUpdates(v.updates) ? v as unknown as GossipMessage : undefined;
    case "push-pull":
      return (v.phase === "request" || v.phase === "response") && typeof v.join === "boolean" &&
          isAddress(v.replyTo) && Array.isArray(v.members) && v.members.length <= membersMax &&
          v.members.every(isDigest)
        ? v as unknown as PushPullMessage
        : undefined;
    default:
      return undefined;
  }
}
