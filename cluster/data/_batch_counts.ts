/**
 * What a storing node remembers of block batches (Engine.blockBatch): how many
 * blocks it took for each since this process started. A writer's settle asks
 * for the count after the node's flush: a node that restarted in between lost
 * the blocks it had not made durable yet, and answers fewer than it was sent
 * (it answers 0 for a batch it never heard of or forgot), so the writer knows
 * to store them again instead of taking them for durable.
 */

/** Batches remembered at once; the oldest goes first (its settle then fails, safely). */
export const batchesMax = 256;
/** Longest batch name a writer may send. */
export const batchNameBytesMax = 128;

/** Throws unless `batch` is a batch name a writer may send. */
export function checkBatchName(batch: unknown): string {
  if (typeof batch !== "string" || batch.length === 0 || batch.length > batchNameBytesMax) {
    throw new TypeError(`bad block batch name (a string of 1 to ${batchNameBytesMax} characters)`);
  }
  return batch;
}

/** See the module doc. */
export class BatchCounts {
  /** Batch → blocks taken, oldest first (Map order: each count moves to the end). */
  #taken = new Map<string, number>();

  /** One more block taken for `batch`. */
  took(batch: string): void {
    const taken = (this.#taken.get(batch) ?? 0) + 1;
    this.#taken.delete(batch);
    this.#taken.set(batch, taken);
    if (this.#taken.size > batchesMax) this.#taken.delete(this.#taken.keys().next().value!);
  }

  /** The blocks taken for `batch`, which is then forgotten. */
  settled(batch: string): number {
    const taken = this.#taken.get(batch) ?? 0;
    this.#taken.delete(batch);
    return taken;
  }
}
