/**
 * The transmit-limited queue of membership updates waiting to be piggybacked
 * (memberlist's TransmitLimitedQueue, reshaped): at most one update per member (a newer
 * one replaces the older), the least-sent updates go first, and an update is dropped
 * once it has been sent `transmitLimit` times.
 *
 * @module
 */

import { assert } from "../../core/assert.ts";
import { type Update, updateBytes } from "./messages.ts";

interface Entry {
  update: Update;
  bytes: number;
  transmits: number;
}

/** No update's JSON is shorter: `{"kind":"left","id":"x","incarnation":0},`. */
const smallestUpdateBytes = updateBytes({ kind: "left", id: "x", incarnation: 0 });

/**
 * Updates waiting to be sent, least-sent first, first-queued first among equals. A plain
 * array kept in that order: the queue holds a handful of updates, rarely more than N.
 */
export class BroadcastQueue {
  #entries: Entry[] = [];

  /** Number of queued updates (one per member at most). */
  get size(): number {
    return this.#entries.length;
  }

  /** True when an update about `memberId` is still queued. */
  has(memberId: string): boolean {
    return this.#indexOf(memberId) >= 0;
  }

  /** Queues `update`, replacing (and restarting the count of) any update about its member. */
  enqueue(update: Update): void {
    this.remove(update.id);
    const entry: Entry = { update, bytes: updateBytes(update), transmits: 0 };
    const entries = this.#entries;
    let i = 0;
    while (i < entries.length && entries[i].transmits === 0) i += 1;
    entries.splice(i, 0, entry);
  }

  /** Drops the update about `memberId`, if one is queued. */
  remove(memberId: string): void {
    const i = this.#indexOf(memberId);
    if (i >= 0) this.#entries.splice(i, 1);
  }

  /**
   * Takes updates for one message: least-sent first, skipping any that would not fit in
   * `budgetBytes`. Each taken update counts one transmission and leaves the queue when it
   * reaches `transmitLimit`.
   */
  take(budgetBytes: number, transmitLimit: number, countMax: number): Update[] {
    assert(transmitLimit >= 1 && countMax >= 0);
    const updates: Update[] = [];
    const taken: Entry[] = [];
    const untaken: Entry[] = [];
    let remaining = budgetBytes;
    for (const entry of this.#entries) {
      const full = updates.length === countMax || remaining < smallestUpdateBytes;
      if (full || entry.bytes > remaining) {
        untaken.push(entry);
        continue;
      }
      updates.push(entry.update);
      remaining -= entry.bytes;
      entry.transmits += 1;
      if (entry.transmits < transmitLimit) taken.push(entry);
    }
    if (updates.length > 0) this.#entries = merge(untaken, taken);
    return updates;
  }

  #indexOf(memberId: string): number {
    const entries = this.#entries;
    for (let i = 0; i < entries.length; i += 1) {
      if (entries[i].update.id === memberId) return i;
    }
    return -1;
  }
}

/**
 * Merges two lists sorted by transmissions; on a tie `first`'s entries go first (they
 * reached that count earlier).
 */
function merge(first: Entry[], second: Entry[]): Entry[] {
  if (second.length === 0) return first;
  if (first.length === 0) return second;
  const merged: Entry[] = [];
  let i = 0;
  let j = 0;
  while (i < first.length && j < second.length) {
    merged.push(first[i].transmits <= second[j].transmits ? first[i++] : second[j++]);
  }
  while (i < first.length) merged.push(first[i++]);
  while (j < second.length) merged.push(second[j++]);
  return merged;
}
