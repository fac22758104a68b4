/**
 * A volume's I/O limits (QoS), as its record keeps them and the API takes
 * them: IOPS and bytes per second, for reads, writes and both together, each
 * with an optional burst. What counts as an I/O is the NBD server's to say
 * (docs/operations.md, "Per-volume I/O limits"); the token buckets that
 * enforce them are in io_limiter.ts.
 *
 * @module
 */
import { qosBpsMax, qosBurstSecondsMax, qosIopsMax } from "./limits.ts";

/**
 * The limits of one volume; a key left out is no limit. Rates are per second
 * (`iops*`: requests, `bps*`: bytes); a `*Burst` is how many requests or bytes
 * may go at once after a quiet spell (the token bucket's size): a tenth of a
 * second at the rate unless told.
 */
export interface VolumeQos {
  iops?: number;
  iopsRead?: number;
  iopsWrite?: number;
  bps?: number;
  bpsRead?: number;
  bpsWrite?: number;
  iopsBurst?: number;
  iopsReadBurst?: number;
  iopsWriteBurst?: number;
  bpsBurst?: number;
  bpsReadBurst?: number;
  bpsWriteBurst?: number;
}

/** The rate keys, in the order the API shows them. */
export const qosRateKeys = ["iops", "iopsRead", "iopsWrite", "bps", "bpsRead", "bpsWrite"] as const;

/** One of the rates a volume may limit. */
export type QosRateKey = typeof qosRateKeys[number];

/** The highest value `key` (a rate or its burst) may take. */
function maxOf(key: string): number {
  const rateMax = key.startsWith("iops") ? qosIopsMax : qosBpsMax;
  return key.endsWith("Burst") ? rateMax * qosBurstSecondsMax : rateMax;
}

const knownKeys: ReadonlySet<string> = new Set(
  qosRateKeys.flatMap((key) => [key, `${key}Burst`]),
);

/**
 * `value` as a volume's limits, checked: an object of known keys whose values
 * are positive integers up to their maximum, every burst with its rate.
 * Throws TypeError or RangeError (an HTTP 400) naming what is wrong.
 */
export function checkQos(value: unknown): VolumeQos {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(
      `Cannot set I/O limits: expected an object such as {"iops": 500, "bps": 104857600}`,
    );
  }
  const qos: Record<string, number> = {};
  for (const [key, limit] of Object.entries(value)) {
    if (!knownKeys.has(key)) {
      throw new TypeError(
        `Cannot set I/O limits: unknown limit ${JSON.stringify(key)} (known: ` +
          `${[...knownKeys].join(", ")})`,
      );
    }
    if (limit === null || limit === undefined) continue;
    if (typeof limit !== "number" || !Number.isInteger(limit) || limit <= 0) {
      throw new TypeError(
        `Cannot set I/O limits: ${key} must be a positive integer (leave it out for no limit), ` +
          `not ${JSON.stringify(limit)}`,
      );
    }
    if (limit > maxOf(key)) {
      throw new RangeError(
        `Cannot set I/O limits: ${key} of ${limit} is over its maximum of ${maxOf(key)}`,
      );
    }
    qos[key] = limit;
  }
  for (const key of Object.keys(qos)) {
    const rate = key.replace(/Burst$/, "");
    if (rate !== key && qos[rate] === undefined) {
      throw new TypeError(`Cannot set I/O limits: ${key} needs ${rate} (a burst of no limit)`);
    }
  }
  return ordered(qos);
}

/**
 * `current` with `patch` applied as a JSON merge patch (RFC 7396): a key given
 * a number sets that limit, a key given null removes it (with its burst, when
 * it is a rate), a key left out stays. The result is checked as checkQos does.
 */
export function mergeQos(current: VolumeQos, patch: unknown): VolumeQos {
  const checked = checkQos(patch);
  const merged: Record<string, number | undefined> = { ...current, ...checked };
  for (const [key, limit] of Object.entries(patch as object)) {
    if (limit !== null) continue;
    delete merged[key];
    if (!key.endsWith("Burst")) delete merged[`${key}Burst`];
  }
  return checkQos(merged);
}

/** True when `qos` limits nothing. */
export function isUnlimited(qos: VolumeQos | undefined): boolean {
  return qos === undefined || Object.keys(qos).length === 0;
}

/** The same limits with their keys in the API's order (rates, then bursts). */
function ordered(qos: Record<string, number>): VolumeQos {
  const out: Record<string, number> = {};
  for (const key of knownKeys) if (qos[key] !== undefined) out[key] = qos[key];
  return out as VolumeQos;
}
