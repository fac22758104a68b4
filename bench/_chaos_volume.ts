/**
 * One volume of the chaos soak (chaos_soak.ts): an NBD session on the node
 * that holds its lease, and a model of what each 4 KiB slot may read.
 *
 * Every write puts a self-describing 4 KiB pattern (volume, slot, sequence
 * number) into one slot, so a read tells which write it saw, or that it saw a
 * torn mix of two. Per slot the model keeps the last write acknowledged
 * (`latest`), the last one a FLUSH made durable (`durable`), and the writes
 * since then that a crash may or may not have kept (`since`: acknowledged or
 * failed). A read is checked strictly (`latest`) while the session lives; after
 * a crash the volume is recovered as a guest would: a new session, a FLUSH,
 * every slot read and checked against `durable` ∪ `since`, and what was read
 * becomes the new truth.
 *
 * @module
 */
import { Command } from "../nbd/protocol.ts";
import { RawNbdClient } from "../tests/_nbd_raw.ts";

export const slotBytes = 4096;
const patternMagic = 0x41544f4c; // "ATOL"
/** Bytes read per NBD request when a whole volume is checked. */
const readChunkBytes = 1024 * 1024;
/** Longest one request may take before the session counts as broken (a node waits up to 60 s). */
export const requestDeadlineMs = 90_000;

/** A slot read back that no allowed write explains. */
export class ChaosViolation extends Error {}

/** The 4 KiB a write of sequence `seq` into `slot` of volume `volume` stores. */
export function slotPattern(volume: number, slot: number, seq: number): Uint8Array {
  const bytes = new Uint8Array(slotBytes);
  const view = new DataView(bytes.buffer);
  for (let at = 0; at < slotBytes; at += 16) {
    view.setUint32(at, patternMagic);
    view.setUint32(at + 4, volume);
    view.setUint32(at + 8, slot);
    view.setUint32(at + 12, seq);
  }
  return bytes;
}

/** The sequence number a slot's bytes hold: 0 for zeros, null for anything torn or foreign. */
export function slotSeq(volume: number, slot: number, bytes: Uint8Array): number | null {
  if (bytes.every((byte) => byte === 0)) return 0;
  const seq = new DataView(bytes.buffer, bytes.byteOffset).getUint32(12);
  const expected = slotPattern(volume, slot, seq);
  return bytes.every((byte, i) => byte === expected[i]) ? seq : null;
}

/** One volume under test: its session, model and counters. */
export class ChaosVolume {
  readonly name: string;
  readonly index: number;
  readonly slots: number;
  /** Per slot: last acknowledged write, last durable one, writes a crash may have kept. */
  #latest: Uint32Array;
  #durable: Uint32Array;
  #since: Map<number, number[]> = new Map();
  #seq = 0;
  #session: RawNbdClient | null = null;
  /** Index of the node the session is open on (null: none). */
  node: number | null = null;
  readonly counts = { writes: 0, flushes: 0, errors: 0, recoveries: 0, checked: 0 };
  /** Requests that failed since the caller last emptied this. */
  readonly errors: string[] = [];
  /**
   * Requests a member answered with an NBD error (as opposed to a connection that
   * broke) since the caller last emptied this: a guest sees EIO there.
   */
  readonly refused: { node: number | null; what: string; error: number }[] = [];

  constructor(index: number, sizeBytes: number) {
    this.index = index;
    this.name = `chaos${index}`;
    this.slots = sizeBytes / slotBytes;
    this.#latest = new Uint32Array(this.slots);
    this.#durable = new Uint32Array(this.slots);
  }

  get open(): boolean {
    return this.#session !== null;
  }

  /** Opens a session on node `node` (its NBD port); the caller recovers when the last one broke. */
  async connect(node: number, port: number): Promise<void> {
    this.close();
    const client = await RawNbdClient.connect(port, { readDeadlineMs: requestDeadlineMs });
    try {
      await withDeadline(client.greet().then(() => client.go(this.name)), `open ${this.name}`);
    } catch (error) {
      client.close();
      throw error;
    }
    this.#session = client;
    this.node = node;
  }

  /** Drops the session without a word (its node was killed, or it broke): a crash's doubt. */
  close(): void {
    if (this.#session !== null) this.#broken = true;
    this.#drop();
  }

  /** Ends the session as a client does (NBD_CMD_DISC): no doubt, nothing may be lost. */
  async disconnect(): Promise<void> {
    if (this.#session === null) return;
    try {
      await this.#session.request({ type: Command.disc });
    } catch { /* the node went away meanwhile */ }
    this.#drop();
  }

  /** True when the last session broke: the volume needs {@linkcode recover}. */
  get broken(): boolean {
    return this.#broken;
  }

  /**
   * Sends one write and lets go of the session without waiting for its reply
   * (its node is about to be paused): the write may land before the pause or
   * never, since the lease moves meanwhile; landing after the volume was
   * recovered elsewhere would be a write of a fenced holder. The session is
   * returned open, for the caller to close once the node ran again.
   */
  async abandon(draw: () => number): Promise<RawNbdClient | null> {
    const session = this.#session;
    if (session === null) return null;
    const slot = Math.floor(draw() * this.slots);
    const seq = ++this.#seq;
    this.#sinceOf(slot).push(seq);
    await session.request(
      { type: Command.write, offset: BigInt(slot * slotBytes), length: slotBytes },
      slotPattern(this.index, slot, seq),
    );
    this.#session = null;
    this.node = null;
    this.#broken = true;
    return session;
  }

  /**
   * Writes one slot (random `draw`s pick it); a failed write breaks the
   * session (the caller recovers the volume) and may or may not have landed.
   */
  async write(draw: () => number): Promise<boolean> {
    const session = this.#session;
    if (session === null) return false;
    const node = this.node;
    const slot = Math.floor(draw() * this.slots);
    const seq = ++this.#seq;
    this.#sinceOf(slot).push(seq);
    try {
      await withDeadline(
        session.request(
          { type: Command.write, offset: BigInt(slot * slotBytes), length: slotBytes },
          slotPattern(this.index, slot, seq),
        ).then(() => session.readSimpleReply()).then((reply) => this.#answered(reply.error, node)),
        `write to ${this.name}`,
      );
    } catch (error) {
      this.#failed(`write on member ${node}`, error);
      return false;
    }
    this.#latest[slot] = seq;
    this.counts.writes++;
    return true;
  }

  /** FLUSH: on success every acknowledged write is durable. */
  async flush(): Promise<boolean> {
    const session = this.#session;
    if (session === null) return false;
    const node = this.node;
    try {
      await withDeadline(
        session.request({ type: Command.flush }).then(() => session.readSimpleReply()).then(
          (reply) => this.#answered(reply.error, node, "flush"),
        ),
        `flush of ${this.name}`,
      );
    } catch (error) {
      this.#failed(`flush on member ${node}`, error);
      return false;
    }
    this.counts.flushes++;
    if (this.#broken) return true; // recover() learns what the crash kept first
    this.#durable.set(this.#latest);
    this.#since.clear();
    return true;
  }

  /**
   * Reads every slot through `client` (this volume's session when null) and
   * checks it is exactly the last acknowledged write.
   */
  async check(client: RawNbdClient | null): Promise<void> {
    await this.#readAll(client, (slot, seq) => {
      this.#verify(slot, seq, [this.#latest[slot]]);
    });
    this.counts.checked++;
  }

  /**
   * After a broken session, on a new one: a FLUSH of what the new holder has,
   * then every slot read and checked against what a crash may have kept (the
   * last durable write, or any written since); what was read is the truth from
   * then on.
   */
  async recover(): Promise<void> {
    if (!await this.flush()) throw new Error(`Cannot recover ${this.name}: its FLUSH failed`);
    const read = new Uint32Array(this.slots);
    await this.#readAll(null, (slot, seq) => {
      this.#verify(slot, seq, [this.#durable[slot], ...this.#since.get(slot) ?? []]);
      read[slot] = seq!;
    });
    this.#latest.set(read);
    this.#durable.set(read);
    this.#since.clear();
    this.#broken = false;
    this.counts.recoveries++;
  }

  #broken = false;

  /** Throws (and notes) the NBD error a reply carries. */
  #answered(error: number, node: number | null, what = "write"): void {
    if (error === 0) return;
    this.refused.push({ node, what, error });
    throw new Error(`NBD error ${error}`);
  }

  /** A request failed: the session is broken (and what failed is told, as a guest's log would). */
  #failed(what: string, error: unknown): void {
    this.counts.errors++;
    this.errors.push(`${what}: ${(error as Error).message}`);
    this.close();
  }

  #drop(): void {
    this.#session?.close();
    this.#session = null;
    this.node = null;
  }

  async #readAll(
    client: RawNbdClient | null,
    each: (slot: number, seq: number | null) => void,
  ): Promise<void> {
    const reader = client ?? this.#session;
    if (reader === null) throw new Error(`Cannot read ${this.name}: no session`);
    const slotsPerChunk = readChunkBytes / slotBytes;
    for (let first = 0; first < this.slots; first += slotsPerChunk) {
      const count = Math.min(slotsPerChunk, this.slots - first);
      const bytes = await withDeadline(
        reader.readData({ offset: first * slotBytes, length: count * slotBytes }, false),
        `read of ${this.name}`,
      );
      for (let i = 0; i < count; i++) {
        const slot = first + i;
        each(slot, slotSeq(this.index, slot, bytes.subarray(i * slotBytes, (i + 1) * slotBytes)));
      }
    }
  }

  #verify(slot: number, seq: number | null, allowed: number[]): void {
    if (seq !== null && allowed.includes(seq)) return;
    throw new ChaosViolation(
      `${this.name} slot ${slot} (offset ${slot * slotBytes}) reads ${
        seq === null ? "torn or foreign bytes" : `write ${seq}`
      }; allowed: ${allowed.map((s) => s === 0 ? "zeros" : `write ${s}`).join(", ")}`,
    );
  }

  #sinceOf(slot: number): number[] {
    let list = this.#since.get(slot);
    if (list === undefined) this.#since.set(slot, list = []);
    return list;
  }
}

/** `promise`, or an Error after the request deadline. */
export async function withDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: no answer in ${requestDeadlineMs} ms`)),
      requestDeadlineMs,
    );
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
