/**
 * What a lease move asks of other members (_lease_moves.ts runs the move): the
 * holder's release, the fence of every live member, a notice to a holder the
 * lease was taken from while it was cut off, and a word to everyone that
 * reads of the volume go elsewhere now.
 */
import { type Clock, LeaseLostError, type VolumeLease } from "../../core/mod.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import { type RpcCaller, RpcError } from "../transport/mod.ts";
import type { LeaseCounters } from "./leases.ts";

/** Pause between requests to a holder that does not answer its release. */
const releaseRetryMs = 200;
/** Pause between notices to a holder whose lease was taken over while it was unreachable. */
const lostNoticeRetryMs = 1000;
/** Margin on a reader's validity for clocks that run at slightly different rates. */
const readerMargin = 1.25;
/** Most member ids a release's reply is read for (as many as placement takes). */
const releaseMembersMax = 65_536;
/** How long a taker keeps trying to tell the old holder it lost the lease. */
const lostNoticeMsMax = 3_600_000;

/** The calls of lease moves from one node. */
export class LeaseMessages {
  #engine: ClusterEngine;
  #rpc: RpcCaller;
  #clock: Clock;
  #takeoverWaitMs: number;
  #counters: LeaseCounters;
  /** Takeovers this node began, per volume (whether or not it then won the record). */
  #takeoversOf = new Map<string, number>();

  constructor(
    engine: ClusterEngine,
    rpc: RpcCaller,
    clock: Clock,
    takeoverWaitMs: number,
    counters: LeaseCounters,
  ) {
    this.#engine = engine;
    this.#rpc = rpc;
    this.#clock = clock;
    this.#takeoverWaitMs = takeoverWaitMs;
    this.#counters = counters;
  }

  /**
   * Takeovers of volume `name` this node began: each fences the holder out,
   * which loses what it acknowledged and did not flush, even when another node
   * then wins the record (the data-path simulation's checker counts them).
   */
  takeoversOf(name: string): number {
    return this.#takeoversOf.get(name) ?? 0;
  }

  #tookOver(name: string): void {
    this.#counters.takeovers++;
    this.#takeoversOf.set(name, this.takeoversOf(name) + 1);
  }

  /**
   * Asks the holder to release; waits for an unreachable one to be declared
   * dead. True when it released (it will write no more), false when it is gone.
   */
  async askRelease(name: string, lease: VolumeLease): Promise<boolean> {
    const deadline = this.#clock.now() + this.#takeoverWaitMs;
    let refusal = "";
    for (;;) {
      const member = this.#engine.member(lease.holder!);
      // A holder this node has not heard of joined moments ago (gossip has not told
      // it yet) and may be writing: it is gone only once the wait is over (a member
      // dead for long enough is forgotten). Seed 192 of the data-path simulation with
      // joins: a takeover 100 ms after a new member's crash missed its flushed writes.
      if (member === undefined && this.#clock.now() <= deadline) {
        await this.#clock.sleep(releaseRetryMs);
        continue;
      }
      if (member === undefined || member.status === "dead") {
        this.#tookOver(name);
        return false; // gone: storage fencing keeps it out if it ever comes back
      }
      // One that left is asked too: it may be back, having taken the lease since,
      // while gossip here still says it left (seed 40370 with joins and leaves: a
      // takeover from a holder that had come back left it serving stale reads). One
      // that does not answer has stopped: gone.
      const left = member.status === "left";
      try {
        const reply = await this.#rpc.call(member.address, "lease.release", {
          header: { name, epoch: lease.epoch },
        }, 5_000);
        if (reply.header.released === true) {
          await this.#knowAll(name, lease.holder!, reply.header.members, deadline);
          return true;
        }
        throw new LeaseLostError(`Cannot move volume "${name}": its holder took it again`);
      } catch (error) {
        if (error instanceof LeaseLostError) throw error;
        // It answers but cannot release (e.g. its writes are not durable yet): say why.
        if (error instanceof RpcError && error.remoteName !== null) refusal = error.message;
        else if (left) {
          this.#tookOver(name);
          return false;
        }
      }
      if (this.#clock.now() > deadline) {
        throw new LeaseLostError(
          `Cannot move the write lease of volume "${name}": holder ${lease.holder} ` +
            (refusal === ""
              ? `is unreachable and not declared dead after ${this.#takeoverWaitMs} ms`
              : `did not release it within ${this.#takeoverWaitMs} ms: ${refusal}`),
        );
      }
      await this.#clock.sleep(releaseRetryMs);
    }
  }

  /**
   * Waits until this node knows every member the releasing holder placed data
   * on (`members`, from its reply): one that joined moments ago may hold the
   * newest copies of the volume's objects, and learning where they stand asks
   * only members this node knows (gossip tells of a new one within seconds).
   * Fails the move at `deadline` (the holder released; a later move goes on).
   */
  async #knowAll(name: string, holder: string, members: unknown, deadline: number) {
    if (!Array.isArray(members) || members.length > releaseMembersMax) return;
    const ids = members.filter((id): id is string => typeof id === "string");
    for (;;) {
      const unknown = ids.filter((id) => this.#engine.member(id) === undefined);
      if (unknown.length === 0) return;
      if (this.#clock.now() > deadline) {
        throw new LeaseLostError(
          `Cannot move the write lease of volume "${name}": its holder ${holder} placed data ` +
            `on members this node does not know yet (${unknown.slice(0, 5).join(", ")})`,
        );
      }
      await this.#clock.sleep(releaseRetryMs);
    }
  }

  /** Raises the volume's fence to `epoch` here and on every live member, all at once. */
  async fence(uid: string, epoch: number): Promise<void> {
    await Promise.all([
      this.#engine.replica.fences.admit(uid, epoch),
      Promise.allSettled(
        this.#engine.liveMembers().filter((member) => member.id !== this.#engine.selfId).map(
          (member) =>
            this.#rpc.call(member.address, "object.fence", { header: { uid, epoch } }, 5_000),
        ),
      ),
    ]);
  }

  /**
   * Tells the holder a lease was taken from (declared dead, so it may be alive
   * and cut off) that it lost it, as soon as it can be reached: until then it
   * believes it holds the lease and serves reads of its own stale instance,
   * and members that forward reads to it get them. It drops its instance
   * without persisting anything (the record moved on); a restarted holder
   * holds nothing and answers at once. Gives up when the holder is forgotten
   * (dead for a day) or after {@linkcode lostNoticeMsMax}.
   */
  async tellOldHolder(name: string, lease: VolumeLease): Promise<void> {
    const deadline = this.#clock.now() + lostNoticeMsMax;
    while (this.#clock.now() < deadline) {
      const member = this.#engine.member(lease.holder!);
      if (member === undefined) return;
      // Tried even while gossip says it is dead or left: it may be alive and just cut
      // off, or back.
      try {
        const reply = await this.#rpc.call(member.address, "lease.release", {
          header: { name, epoch: lease.epoch, takenOver: true },
        }, 5_000);
        if (reply.header.released === true) return;
      } catch {
        // unreachable, or failing for now: tell it again
      }
      await this.#clock.sleep(lostNoticeRetryMs);
    }
  }

  /**
   * Tells the nodes the record listed as readers of `name` (nobody held it)
   * that its lease moved, so that they drop their readers (_idle_readers.ts).
   * Resolves once each answered, or once the reader of one that did not ran
   * out: `validMs` (with a margin for clock rates) after now, which is after
   * the compare-and-set that cleared the list, hence after the start of the
   * last record read any of them could have renewed its reader with.
   */
  async dropReaders(name: string, readers: string[], validMs: number): Promise<void> {
    const since = this.#clock.now();
    const told = await Promise.all(readers.map(async (id) => {
      const member = this.#engine.member(id);
      if (member === undefined) return false;
      // One gossip says left is asked too, and waited for when it does not answer:
      // it may be back with a reader of the volume while this node has not heard
      // of its return (seed 9130 with joins and leaves: a member that left and
      // came back kept reading a volume another member took and wrote).
      try {
        await this.#rpc.call(member.address, "lease.changed", { header: { name } }, validMs);
        return true;
      } catch {
        return false;
      }
    }));
    if (told.every(Boolean)) return;
    const wait = since + validMs * readerMargin - this.#clock.now();
    if (wait > 0) await this.#clock.sleep(wait);
  }

  /**
   * Tells live members to forget where they forwarded reads of `name` (best
   * effort), but those in `told` (listed readers: dropReaders tells them).
   */
  tellMembers(name: string, told: ReadonlySet<string>): void {
    for (const member of this.#engine.liveMembers()) {
      if (member.id === this.#engine.selfId || told.has(member.id)) continue;
      this.#rpc.call(member.address, "lease.changed", { header: { name } }, 5_000).catch(() => {});
    }
  }
}
