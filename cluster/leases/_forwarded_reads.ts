/**
 * Reads forwarded to a volume's lease holder (_holder_reads.ts), sent in
 * batches: a read goes at once when no batch to that holder is in flight,
 * otherwise it waits for the next batch with whatever else arrived meanwhile
 * (as a writer's changes do, data/object_rpc_link.ts). At low depth nothing
 * waits; at depth one call carries many reads, and the call, not the 4 KiB,
 * is what a forwarded read costs both nodes (docs/performance.md).
 *
 * The holder serves each read of a batch as it serves a lone one (it still
 * holds the lease, confirmed, then reads its instance) and answers each on its
 * own: served, not held, or the error it threw. The data of the reads served
 * comes back in one buffer, in order. A holder of an earlier version, which
 * knows only `volume.read`, is called one read at a time for a minute.
 */
import type { ByteRange, Clock } from "../../core/mod.ts";
import { type RpcCaller, RpcError, type RpcMessage } from "../transport/mod.ts";

/** Reads one batch carries at most. */
export const forwardedReadsBatchMax = 64;
/** Largest read forwarded in one call (an NBD request's maximum), and most bytes of one batch. */
export const forwardedReadBytesMax = 32 * 1024 * 1024;
/** Batches in flight to one holder at once. */
const batchesInFlightMax = 2;
/** How long a holder that does not know batches is called one read at a time. */
const singleReadsMs = 60_000;

/** What a holder answered for one read. */
export type ForwardedRead = "served" | "not held" | "short";

interface Pending {
  name: string;
  range: ByteRange;
  into: Uint8Array;
  done: PromiseWithResolvers<ForwardedRead>;
}

interface Holder {
  pending: Pending[];
  inFlight: number;
  /** `clock.now()` until which this holder is called one read at a time. */
  singleUntil: number;
}

/** The forwarded reads of one node, per holder address; see the module doc. */
export class ForwardedReads {
  #rpc: RpcCaller;
  #clock: Clock;
  #onCall: () => void;
  /** Holders with reads pending or in flight (an idle one is forgotten, but for `single`). */
  #holders = new Map<string, Holder>();

  /** `onCall`: told of every call sent (a batch, or one read). */
  constructor(rpc: RpcCaller, clock: Clock, onCall: () => void = () => {}) {
    this.#rpc = rpc;
    this.#clock = clock;
    this.#onCall = onCall;
  }

  /**
   * Reads `range` of `name` into `into` at the holder at `address`. Rejects as
   * a call to it would (unreachable, or the error its read threw).
   */
  read(address: string, name: string, range: ByteRange, into: Uint8Array): Promise<ForwardedRead> {
    let holder = this.#holders.get(address);
    if (holder === undefined) {
      this.#holders.set(address, holder = { pending: [], inFlight: 0, singleUntil: 0 });
    }
    const done = Promise.withResolvers<ForwardedRead>();
    holder.pending.push({ name, range, into, done });
    this.#send(address, holder);
    return done.promise;
  }

  #send(address: string, holder: Holder): void {
    while (holder.inFlight < batchesInFlightMax && holder.pending.length > 0) {
      const batch: Pending[] = [];
      let bytes = 0;
      while (
        holder.pending.length > 0 && batch.length < forwardedReadsBatchMax &&
        (batch.length === 0 || bytes + holder.pending[0].range.length <= forwardedReadBytesMax)
      ) {
        const next = holder.pending.shift()!;
        bytes += next.range.length;
        batch.push(next);
      }
      holder.inFlight++;
      const single = batch.length === 1 || this.#clock.now() < holder.singleUntil;
      const sent = single
        ? Promise.all(batch.map((read) => this.#single(address, read)))
        : this.#batch(address, holder, batch);
      sent.finally(() => {
        holder.inFlight--;
        this.#send(address, holder);
        const idle = holder.inFlight === 0 && holder.pending.length === 0;
        if (idle && this.#clock.now() >= holder.singleUntil) {
          this.#holders.delete(address);
        }
      });
    }
  }

  /** One read in one `volume.read` call (what every version serves). */
  async #single(address: string, read: Pending): Promise<void> {
    const { name, range, into, done } = read;
    this.#onCall();
    try {
      const reply = await this.#rpc.call(
        address,
        "volume.read",
        { header: { name, offset: range.offset, length: range.length } },
        undefined,
        { pooledReply: true },
      );
      const held = reply.header.held === true;
      const served = held && reply.data?.length === range.length;
      if (served) into.set(reply.data!);
      reply.release?.();
      done.resolve(served ? "served" : held ? "short" : "not held");
    } catch (error) {
      done.reject(error);
    }
  }

  async #batch(address: string, holder: Holder, batch: Pending[]): Promise<void> {
    const reads = batch.map(({ name, range }) => ({ name, ...range }));
    let reply: RpcMessage;
    this.#onCall();
    try {
      reply = await this.#rpc.call(address, "volume.reads", { header: { reads } }, undefined, {
        pooledReply: true,
      });
    } catch (error) {
      if (
        error instanceof RpcError && error.remoteName === "TypeError" &&
        /unknown method volume\.reads/.test(error.message)
      ) {
        // A holder of an earlier version: one read at a time for a while.
        holder.singleUntil = this.#clock.now() + singleReadsMs;
        await Promise.all(batch.map((read) => this.#single(address, read)));
        return;
      }
      for (const { done } of batch) done.reject(error);
      return;
    }
    try {
      const results = reply.header.results;
      if (!Array.isArray(results) || results.length !== batch.length) {
        throw new TypeError(`volume.reads on ${address}: malformed reply`);
      }
      const data = reply.data ?? new Uint8Array();
      let at = 0;
      batch.forEach(({ range, into, done }, i) => {
        const result = (results[i] ?? {}) as Record<string, unknown>;
        if (typeof result.error === "string") {
          done.reject(
            new RpcError(`volume.reads on ${address} failed: ${result.error}`, false, {
              remoteName: String(result.name),
            }),
          );
        } else if (result.held !== true) {
          done.resolve("not held");
        } else if (at + range.length > data.length) {
          at = data.length;
          done.resolve("short");
        } else {
          into.set(data.subarray(at, at + range.length));
          at += range.length;
          done.resolve("served");
        }
      });
    } catch (error) {
      for (const { done } of batch) done.reject(error); // those not answered yet
    } finally {
      reply.release?.();
    }
  }
}

/**
 * The holder's side of `volume.reads`: checks the batch, serves each read with
 * `serve` (true: read into its buffer; false: not held here), and answers them
 * in order, the data of those served in one buffer from `acquire` (given back
 * with `release` once sent).
 */
export async function serveForwardedReads(
  header: Record<string, unknown>,
  serve: (name: string, range: ByteRange, into: Uint8Array) => Promise<boolean>,
  acquire: (bytes: number) => Uint8Array,
  release: (buffer: Uint8Array) => void,
): Promise<RpcMessage> {
  const reads = checkedReads(header.reads);
  const total = reads.reduce((sum, read) => sum + read.length, 0);
  const buffer = acquire(total);
  const slots: number[] = [];
  reads.reduce((at, read) => (slots.push(at), at + read.length), 0);
  const outcomes = await Promise.allSettled(
    reads.map((read, i) =>
      serve(read.name, read, buffer.subarray(slots[i], slots[i] + read.length))
    ),
  );
  // The data of the reads served, packed in order (moved only when one was not).
  let at = 0;
  const results = outcomes.map((outcome, i) => {
    if (outcome.status === "rejected") {
      const error = outcome.reason as Error;
      return { error: String(error?.message ?? error), name: String(error?.name ?? "Error") };
    }
    if (!outcome.value) return { held: false };
    if (at !== slots[i]) buffer.copyWithin(at, slots[i], slots[i] + reads[i].length);
    at += reads[i].length;
    return { held: true };
  });
  const data = buffer.subarray(0, at);
  return { header: { results }, data, sent: () => release(buffer) };
}

/** The reads of a `volume.reads` header, each range checked; throws on anything else. */
function checkedReads(value: unknown): { name: string; offset: number; length: number }[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > forwardedReadsBatchMax) {
    throw new RangeError(`bad reads: 1 to ${forwardedReadsBatchMax} expected`);
  }
  let total = 0;
  const reads = value.map((read: Record<string, unknown>) => {
    const { name, offset, length } = read ?? {};
    if (
      typeof name !== "string" || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length)
    ) {
      throw new TypeError("bad read");
    }
    if ((offset as number) < 0 || (length as number) < 0) throw new RangeError("bad range");
    total += length as number;
    return { name, offset: offset as number, length: length as number };
  });
  if (total > forwardedReadBytesMax) throw new RangeError("bad length");
  return reads;
}
