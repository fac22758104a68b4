/**
 * How long a holder may serve a volume from its own instance without asking
 * the record again. A holder cut off from the others keeps its lease in its
 * own eyes while they declare it dead and one of them takes the lease over;
 * fencing keeps its writes out of storage the taker reached, but its own
 * instance would still answer reads with what the volume was, and acknowledge
 * writes on copies the taker could not fence. So a holder serves only while
 * it has read the record, and found itself the holder at its epoch, within
 * `validMs` (on the monotonic clock, measured from when the read started):
 * busy volumes are confirmed again in the background before that runs out,
 * an idle one pays one metadata read on its next use. `validMs` is kept well
 * below the time gossip takes to declare a member dead (the earliest a
 * takeover can happen), so a deposed holder has stopped serving by then.
 */
import { type Clock, LeaseLostError } from "../../core/mod.ts";

/** Default `validMs`: gossip declares a member dead after about 5 s at the earliest. */
export const leaseValidMsDefault = 2_000;
/**
 * How long a request waits for the record to answer before failing (503 /
 * EIO), in leases' validity (5 s by default): a node cut off would otherwise
 * hold every request for the RPC timeout, and a guest takes an EIO on a read
 * badly, so a loaded cluster whose record answers slowly is given time. The
 * read goes on in the background, shared by later requests. Safety does not
 * depend on it: a request waits only for the record to confirm the lease.
 */
const checkWaitValidities = 2.5;

/** When each held lease was last confirmed; see the module doc. */
export class LeaseValidity {
  #clock: Clock;
  #validMs: number;
  /** Reads the record: true when this node still holds `name` at its epoch. */
  #check: (name: string) => Promise<boolean>;
  #validUntil = new Map<string, number>();
  #checking = new Map<string, Promise<void>>();

  constructor(clock: Clock, validMs: number, check: (name: string) => Promise<boolean>) {
    this.#clock = clock;
    this.#validMs = validMs;
    this.#check = check;
  }

  /** The lease of `name` was taken at `at` (the record just written names this node). */
  granted(name: string, at: number): void {
    this.#validUntil.set(name, at + this.#validMs);
  }

  /**
   * True while the lease of `name` was confirmed within `validMs`, without
   * waiting; a held lease confirmed more than half of that ago is confirmed
   * again in the background, so that one in use stays valid (the reads of a
   * clone's frozen objects through the holder of its origin, which is idle).
   */
  isValid(name: string): boolean {
    const until = this.#validUntil.get(name);
    if (until === undefined) return false;
    const left = until - this.#clock.now();
    if (left < this.#validMs / 2) this.#refresh(name).catch(() => {});
    return left > 0;
  }

  /** The lease of `name` is no longer held here. */
  forget(name: string): void {
    this.#validUntil.delete(name);
  }

  /**
   * Resolves when this node may serve `name` now; throws LeaseLostError when
   * the record names another holder (or epoch), and whatever reading it threw
   * (no metadata quorum) when it cannot tell.
   */
  async confirm(name: string): Promise<void> {
    // Busy volumes are confirmed ahead (isValid), so that none of their requests waits.
    if (this.isValid(name)) return;
    const abort = new AbortController();
    const waited = this.#clock.sleep(checkWaitValidities * this.#validMs, abort.signal)
      .then(() => {
        throw new Error(`the record of "${name}" did not answer in time`);
      }, () => {});
    try {
      await Promise.race([this.#refresh(name), waited]);
    } finally {
      abort.abort();
    }
  }

  #refresh(name: string): Promise<void> {
    let checking = this.#checking.get(name);
    if (checking === undefined) {
      const started = this.#clock.now();
      checking = this.#check(name).then((ours) => {
        if (!ours) {
          this.forget(name);
          throw new LeaseLostError(
            `Cannot serve volume "${name}" here: its write lease moved to another node`,
          );
        }
        if (this.#validUntil.has(name) || this.#clock.now() >= started) {
          this.#validUntil.set(name, started + this.#validMs);
        }
      }).finally(() => this.#checking.delete(name));
      this.#checking.set(name, checking);
    }
    return checking;
  }
}
