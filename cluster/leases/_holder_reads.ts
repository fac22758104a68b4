/**
 * Reads and flushes of volumes through any node, coherent with the write lease
 * wherever it is: the holder serves them from its own instance (once it
 * confirmed it still holds the lease); another node forwards them to the live
 * holder, and without one reads the record's last flushed state (nobody can
 * have acknowledged more).
 */
import {
  BufferPool,
  type ByteRange,
  type Clock,
  LeaseLostError,
  type Store,
  UnavailableError,
  type Volume,
} from "../../core/mod.ts";
import { IdleReaders } from "./_idle_readers.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import { type RpcCaller, RpcError, type RpcMethod, rpcTimeoutMsDefault } from "../transport/mod.ts";
import type { LeaseCounters } from "./leases.ts";

/** Tries to read through the holder before the read fails (about 5 s with the pauses). */
const forwardAttemptsMax = 20;
/** Pause after a forwarded read that failed. */
const forwardRetryMs = 250;
/** Largest read forwarded to the holder in one call (an NBD request's maximum). */
const forwardedReadBytesMax = 32 * 1024 * 1024;
/** Bytes of buffers kept for reads served for other nodes. */
const servedReadBytesMax = 64 * 1024 * 1024;
/**
 * How long a flush forwarded to the holder is waited for: the holder's flush
 * waits on silent members for a call's timeout at several steps in turn (the
 * replicas' flushes, then an object's learning: its replicas, the members off
 * its placement, a copy), and only its answer says whether the writes are
 * durable or were lost; a forwarder that gave up at one call's timeout lost that
 * answer (see HolderReads.flush).
 */
const forwardedFlushTimeoutMs = 6 * rpcTimeoutMsDefault;

/** What {@linkcode HolderReads} needs of its node. */
export interface HolderReadsOptions {
  store: () => Store;
  engine: ClusterEngine;
  rpc: RpcCaller;
  counters: LeaseCounters;
  /** True when this node holds the write lease of `name`. */
  holds: (name: string) => boolean;
  /** Resolves when this node may serve `name` from its own instance now (LeaseManager.confirm). */
  confirm: (name: string) => Promise<void>;
  /** Another node read `name` through this node's lease (_idle_release.ts). */
  readElsewhere: (name: string) => void;
  clock: Clock;
  /** How long a reader of a volume nobody holds lasts without reading its record (_idle_readers.ts). */
  validMs: number;
}

/** The reads and flushes of one node; see the module doc. */
export class HolderReads {
  #store: () => Store;
  #engine: ClusterEngine;
  #rpc: RpcCaller;
  #counters: LeaseCounters;
  #holds: (name: string) => boolean;
  #confirm: (name: string) => Promise<void>;
  #readElsewhere: (name: string) => void;
  /** Where reads of a volume held elsewhere go, as last read from its record. */
  #holders = new Map<string, string | null>();
  #idle: IdleReaders;
  #clock: Clock;
  /** The buffers of reads served for other nodes. */
  #reads = new BufferPool(servedReadBytesMax, forwardedReadBytesMax);

  constructor(options: HolderReadsOptions) {
    this.#store = options.store;
    this.#engine = options.engine;
    this.#rpc = options.rpc;
    this.#counters = options.counters;
    this.#holds = options.holds;
    this.#confirm = options.confirm;
    this.#readElsewhere = options.readElsewhere;
    this.#clock = options.clock;
    this.#idle = new IdleReaders(options.store, options.engine, options.clock, options.validMs);
  }

  /** How long a reader of a volume nobody holds lasts here without reading its record. */
  get validMs(): number {
    return this.#idle.validMs;
  }

  /** The lease of `name` moved: look its holder up again on the next read. */
  forget(name: string): void {
    this.#holders.delete(name);
    this.#idle.forget(name);
  }

  /** Reads `range` of `name`, coherent with the holder wherever it is. */
  async read(name: string, range: ByteRange, into: Uint8Array): Promise<void> {
    let refusal = "the lease kept moving";
    let notHeld = false;
    for (let attempt = 0; attempt < forwardAttemptsMax; attempt++) {
      if (this.#holds(name)) {
        try {
          await this.#confirm(name);
        } catch (error) {
          if (error instanceof LeaseLostError) continue; // moved: read where it went
          throw error;
        }
        await (await this.#store().openVolume(name)).readAt(range, into);
        return;
      }
      const idle = await this.#idle.valid(name);
      if (idle !== null) {
        await idle.readAt(range, into);
        this.#counters.idleReads++;
        return;
      }
      let holder = this.#holders.get(name);
      let loaded: Volume | undefined;
      if (holder === undefined) {
        ({ volume: loaded, holder } = await this.#idle.load(name));
        this.#holders.set(name, holder);
      }
      const member = holder === null ? undefined : this.#engine.member(holder);
      // One gossip says left is asked too: it may be back and hold the lease again
      // (seed 40370 with joins and leaves); one that does not answer has stopped.
      const left = member?.status === "left";
      const live = member !== undefined &&
        (member.status === "alive" || member.status === "suspect" || left);
      if (holder !== null && member === undefined) {
        // A holder this node has not heard of yet (it joined moments ago) may have
        // acknowledged writes the record does not name: wait for gossip to tell of it.
        // (One dead for so long that it was forgotten stays unknown: the read fails
        // until a writer takes the lease over, as a takeover does after its wait.)
        notHeld = false;
        refusal = `holder ${holder} is not a member this node knows`;
        this.#holders.delete(name);
        await this.#clock.sleep(forwardRetryMs);
        continue;
      }
      if (holder === null) {
        // Nobody can have acknowledged more than the record's flushed state.
        await (loaded ?? (await this.#idle.load(name)).volume).readAt(range, into);
        this.#holders.delete(name);
        return;
      }
      if (holder === this.#engine.selfId || !live) {
        // Nor here; but the holder flushed where its own view of the members placed the
        // objects, which may not be where this node looks (seed 710480 with joins,
        // leaves and replacements: healing had spread an older copy to the replicas
        // this node placed it on, and they agreed on it): every live member is asked.
        await (await this.#store().loadVolume(name, { orphaned: true })).readAt(range, into);
        this.#holders.delete(name);
        return;
      }
      try {
        const reply = await this.#rpc.call(
          member!.address,
          "volume.read",
          {
            header: { name, offset: range.offset, length: range.length },
          },
          undefined,
          { pooledReply: true },
        );
        const done = reply.header.held === true && reply.data?.length === range.length;
        if (done) into.set(reply.data!);
        reply.release?.();
        if (done) {
          this.#counters.forwardedReads++;
          return;
        }
        notHeld = reply.header.held !== true;
        refusal = notHeld ? "it does not hold it" : "a short answer";
      } catch (error) {
        if (left && !(error instanceof RpcError && error.remoteName !== null)) {
          // It left and does not answer: it holds nothing now (as a restarted one).
          notHeld = true;
          break;
        }
        notHeld = false;
        refusal = (error as Error).message; // unreachable, or its read failed: look again
        // A holder restarting, or being declared dead, answers again soon: give it time.
        await this.#clock.sleep(forwardRetryMs);
      }
      this.#holders.delete(name);
    }
    // The member the record names says it holds no lease (it restarted): nobody can
    // have acknowledged more than the record's flushed state.
    if (notHeld) {
      const volume = await this.#store().loadVolume(name, { orphaned: true });
      return void await volume.readAt(range, into);
    }
    // A holder that did not answer may have acknowledged writes the record does not
    // name yet: the record is no answer (seed 40344 of the data-path simulation).
    throw new UnavailableError(
      `Cannot read volume "${name}" through this node now: its write lease holder did not ` +
        `serve the read (${refusal})`,
    );
  }

  /**
   * Flushes `name` where it is written: here when held, else at its live holder
   * (a flush is coherent with the holder, as reads are: it reports a loss of
   * writes the holder found there). The forwarded flush is waited for as long as
   * the holder's may take ({@linkcode forwardedFlushTimeoutMs}): the holder
   * reports a loss once, to the flush that finds it, so one whose caller had
   * given up told nobody, and the caller went on while the holder was still
   * going back from the lost writes (seed 1703790 with joins, leaves and
   * replacements: the holder's flush waited a call's timeout twice on a member
   * dead for good, the only one that had taken an unflushed write; the
   * forwarded call timed out first, and a read at the holder took the lost
   * writes' map and found no copy of their object).
   */
  async flush(name: string): Promise<void> {
    if (this.#holds(name)) return await (await this.#store().openVolume(name)).flush();
    const holder = (await this.#store().loadVolume(name)).lease?.holder ?? null;
    const member = holder === null ? undefined : this.#engine.member(holder);
    if (member === undefined || (member.status !== "alive" && member.status !== "suspect")) return;
    if (member.id === this.#engine.selfId) return;
    await this.#rpc.call(
      member.address,
      "volume.flush",
      { header: { name } },
      forwardedFlushTimeoutMs,
    );
  }

  /** The methods other members call: flush or read a volume held here; a lease moved. */
  methods(): Record<string, RpcMethod> {
    return {
      "volume.flush": async (request) => {
        const name = String(request.header.name);
        if (!this.#holds(name)) return { header: { held: false } };
        await (await this.#store().openVolume(name)).flush();
        return { header: { held: true } };
      },
      "volume.read": async (request) => {
        const name = String(request.header.name);
        const offset = request.header.offset, length = request.header.length;
        if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) {
          throw new TypeError("bad range");
        }
        if ((length as number) < 0 || (length as number) > forwardedReadBytesMax) {
          throw new RangeError("bad length");
        }
        if (!this.#holds(name)) return { header: { held: false } };
        try {
          await this.#confirm(name);
        } catch (error) {
          if (error instanceof LeaseLostError) return { header: { held: false } };
          throw error;
        }
        // Into a reused buffer (a new one costs more than a 4 KiB read), back once sent.
        const data = this.#reads.acquire(length as number);
        try {
          await (await this.#store().openVolume(name)).readAt(
            { offset: offset as number, length: length as number },
            data,
          );
        } catch (error) {
          this.#reads.release(data);
          throw error;
        }
        this.#readElsewhere(name);
        return { header: { held: true }, data, sent: () => this.#reads.release(data) };
      },
      "lease.changed": (request) => {
        this.forget(String(request.header.name));
        return { header: {} };
      },
    };
  }
}
