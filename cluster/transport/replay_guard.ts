/**
 * Replay defence without clocks: per channel (a sender's boot, an RPC session),
 * a sliding window of the sequence numbers accepted, as IPsec and WireGuard keep.
 * A number is accepted once, and only while it is within
 * {@linkcode replayWindowSequencesMax} of the highest one seen on its channel;
 * messages may therefore arrive out of order, up to that far.
 */
import { assert } from "../../core/assert.ts";

/**
 * Widest span of sequence numbers remembered per channel: how far a message may
 * be overtaken by later ones and still be accepted (512 bytes per channel).
 */
export const replayWindowSequencesMax = 4096;
assert(replayWindowSequencesMax % 32 === 0);

/** The sequence numbers accepted on one channel, within the window. */
export class SequenceWindow {
  /** Highest accepted; 0 before the first (sequence numbers start at 1). */
  #highest = 0;
  #seen = new Uint32Array(replayWindowSequencesMax / 32);

  /** Records `sequence`; false when it was seen already or is too old to tell. */
  accept(sequence: number): boolean {
    assert(Number.isSafeInteger(sequence), "sequence number");
    if (sequence <= 0) return false;
    if (sequence > this.#highest) {
      if (sequence - this.#highest >= replayWindowSequencesMax) {
        this.#seen.fill(0);
      } else {
        for (let skipped = this.#highest + 1; skipped < sequence; skipped++) {
          this.#set(skipped, false);
        }
      }
      this.#highest = sequence;
      this.#set(sequence, true);
      return true;
    }
    if (this.#highest - sequence >= replayWindowSequencesMax || this.#has(sequence)) return false;
    this.#set(sequence, true);
    return true;
  }

  #has(sequence: number): boolean {
    const bit = sequence % replayWindowSequencesMax;
    return (this.#seen[bit >>> 5] & (1 << (bit & 31))) !== 0;
  }

  #set(sequence: number, seen: boolean): void {
    const bit = sequence % replayWindowSequencesMax;
    if (seen) this.#seen[bit >>> 5] |= 1 << (bit & 31);
    else this.#seen[bit >>> 5] &= ~(1 << (bit & 31));
  }
}

/**
 * Sequence windows of at most `channelsMax` channels; when full, the channel
 * used least recently is forgotten.
 */
export class ReplayGuard {
  #windows = new Map<string, SequenceWindow>();

  constructor(readonly channelsMax: number) {
    assert(channelsMax > 0);
  }

  /** Channels remembered now. */
  get size(): number {
    return this.#windows.size;
  }

  /** Starts a channel (an RPC session minted here). */
  add(channel: string): void {
    this.#windows.set(channel, new SequenceWindow());
    this.#evict();
  }

  /**
   * Accepts `sequence` on `channel` once. An unknown channel is started when
   * `start` is true (a sender's new boot), and refused as "session" otherwise.
   */
  accept(channel: string, sequence: number, start: boolean): "replay" | "session" | null {
    let window = this.#windows.get(channel);
    if (window === undefined) {
      if (!start) return "session";
      window = new SequenceWindow();
    }
    if (!window.accept(sequence)) return "replay";
    // Re-inserted last, so the map's first key is always the one used least recently.
    this.#windows.delete(channel);
    this.#windows.set(channel, window);
    this.#evict();
    return null;
  }

  #evict(): void {
    while (this.#windows.size > this.channelsMax) {
      this.#windows.delete(this.#windows.keys().next().value!);
    }
  }
}
