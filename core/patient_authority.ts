/**
 * Volume handles that wait out a cluster that cannot answer for a while,
 * instead of failing the request. A member that dies is not known dead at
 * once: until gossip declares it so (seconds), a write that needs its copy
 * finds too few replicas, and a read may not yet know where the newest copy
 * stands. Failing such a request answers EIO to a guest, whose file system
 * then remounts read-only, for a routine node death that the cluster rides out
 * a few seconds later. Ceph blocks the I/O in that window instead; so do these
 * handles: a request that fails as unavailable (`isUnavailable`) is tried
 * again, backing off from 50 ms to 1 s, until it succeeds or the wait
 * (60 s by default) runs out, and only then fails. A node cut off from most
 * members does not wait (`waits`): its side of a partition cannot go on, and
 * its volumes may be taken over elsewhere; its requests fail at once, as
 * before.
 *
 * Retrying is what a guest would do after an error, without the error: a read,
 * a write of the same bytes at the same offset, a zeroing, a trim or a flush
 * may run again whatever the failed attempt left, and a write still waiting is
 * not acknowledged, so no FLUSH is owed it. Errors that are not unavailability
 * fail at once: a lease moved away (another node writes the volume now),
 * writes lost, a full disk, bad input.
 *
 * @module
 */
import type { ByteRange } from "./engine.ts";
import type { Extent } from "./map_io.ts";
import type { VolumeAuthority, VolumeHandle } from "./authority.ts";
import type { Clock } from "./clock.ts";
import { UnavailableError } from "./errors.ts";
import { logger } from "../log/mod.ts";
import { requestsWaited } from "../metrics/mod.ts";

const log = logger("volume");

/** Longest a request waits for the cluster before it fails. */
export const unavailableWaitMsDefault = 60_000;
const retryFirstMs = 50;
const retryMaxMs = 1_000;

/**
 * Names of the errors that mean "too few members answer now": UnavailableError
 * and the cluster's kinds of it, including ReplicaQuorumError (too few replicas
 * of an object or block answered). Locally `instanceof UnavailableError` finds
 * those that extend it; the names cover the others, which live in `cluster/`
 * where `core` does not reach, and a call forwarded to a lease holder, which
 * carries the holder's error by name only.
 */
const unavailableNames = new Set([
  "UnavailableError",
  "NoQuorumError",
  "NotJoinedError",
  "ReplicaQuorumError",
]);

/**
 * True when `error` says the cluster cannot serve this now, through no fault
 * of the request: an UnavailableError or one of the cluster's kinds of it, or
 * a call to a peer that could not be reached or answered one.
 */
export function isUnavailable(error: unknown): boolean {
  if (error instanceof UnavailableError) return true;
  if (!(error instanceof Error)) return false;
  const remote = error as Error & { unreachable?: unknown; remoteName?: unknown };
  return unavailableNames.has(error.name) || remote.unreachable === true ||
    (typeof remote.remoteName === "string" && unavailableNames.has(remote.remoteName));
}

/** Options of {@linkcode PatientAuthority}. */
export interface PatientAuthorityOptions {
  clock: Clock;
  /** Longest a request waits; {@linkcode unavailableWaitMsDefault} unless told. */
  waitMs?: number;
  /**
   * False when waiting cannot help now, and requests fail at once: a node cut
   * off from most members is on the side of a partition that cannot go on, and
   * another node may take its volumes over (always true unless told).
   */
  waits?: () => boolean;
}

/** An authority whose handles wait out unavailability (see the module doc). */
export class PatientAuthority implements VolumeAuthority {
  #inner: VolumeAuthority;
  #patience: Patience;

  constructor(inner: VolumeAuthority, options: PatientAuthorityOptions) {
    this.#inner = inner;
    this.#patience = {
      clock: options.clock,
      waitMs: options.waitMs ?? unavailableWaitMsDefault,
      waits: options.waits ?? (() => true),
    };
  }

  async open(name: string): Promise<VolumeHandle> {
    return new PatientHandle(await this.#inner.open(name), this.#patience);
  }
}

type Operation = "read" | "write" | "zero" | "trim" | "flush";

/** How handles wait: PatientAuthorityOptions with the defaults filled in. */
interface Patience {
  clock: Clock;
  waitMs: number;
  waits: () => boolean;
}

class PatientHandle implements VolumeHandle {
  #inner: VolumeHandle;
  #patience: Patience;
  /** Requests of this handle waiting now: the first one logs, the last one logs the end. */
  #waiting = 0;
  /** When the first of the requests waiting now started to wait. */
  #waitingSinceMs = 0;

  constructor(inner: VolumeHandle, patience: Patience) {
    this.#inner = inner;
    this.#patience = patience;
  }

  get name() {
    return this.#inner.name;
  }
  get sizeBytes() {
    return this.#inner.sizeBytes;
  }
  get canWrite() {
    return this.#inner.canWrite;
  }
  get canMultiConn() {
    return this.#inner.canMultiConn;
  }
  read(range: ByteRange, into: Uint8Array): Promise<void> {
    return this.#patiently("read", () => this.#inner.read(range, into));
  }
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    return this.#patiently("write", () => this.#inner.write(offset, data, fua));
  }
  zero(range: ByteRange, options: { fua: boolean; keepAllocated: boolean }): Promise<void> {
    return this.#patiently("zero", () => this.#inner.zero(range, options));
  }
  zeroIsFast(range: ByteRange, keepAllocated: boolean): boolean {
    return this.#inner.zeroIsFast(range, keepAllocated);
  }
  trim(range: ByteRange, fua: boolean): Promise<void> {
    return this.#patiently("trim", () => this.#inner.trim(range, fua));
  }
  flush(): Promise<void> {
    return this.#patiently("flush", () => this.#inner.flush());
  }
  extents(range: ByteRange): Extent[] {
    return this.#inner.extents(range);
  }

  /** Runs `attempt`; while it fails as unavailable, again after a pause, up to the wait. */
  async #patiently(operation: Operation, attempt: () => Promise<void>): Promise<void> {
    try {
      return await attempt(); // the usual case: one await, nothing else
    } catch (error) {
      if (!isUnavailable(error) || !this.#patience.waits()) throw error;
      return await this.#wait(operation, attempt, error);
    }
  }

  async #wait(operation: Operation, attempt: () => Promise<void>, first: unknown): Promise<void> {
    const { clock, waitMs, waits } = this.#patience;
    const startedMs = clock.now();
    if (this.#waiting++ === 0) {
      this.#waitingSinceMs = startedMs;
      log.warn("volume {volume}: {operation} waits for the cluster: {error}", {
        volume: this.name,
        operation,
        error: (first as Error).message,
      });
    }
    let pauseMs = retryFirstMs;
    let outcome: "served" | "failed" = "failed";
    try {
      for (;;) {
        await clock.sleep(pauseMs);
        pauseMs = Math.min(retryMaxMs, pauseMs * 2);
        try {
          await attempt();
          outcome = "served";
          return;
        } catch (error) {
          const waited = clock.now() - startedMs;
          if (!isUnavailable(error) || waited >= waitMs || !waits()) throw error;
        }
      }
    } finally {
      requestsWaited.inc({ operation, outcome });
      if (--this.#waiting === 0) {
        log.info("volume {volume}: requests go on after {ms} ms waiting ({outcome})", {
          volume: this.name,
          ms: Math.round(clock.now() - this.#waitingSinceMs),
          outcome,
        });
      }
    }
  }
}
