/**
 * Blocks the local engine was given since its last flush: each one is written
 * to a temporary file (off the event loop: a put of a block being written
 * waits for that write), waits there, synced in the background a few at a time
 * so that the disk writes while an upload is still arriving, and is renamed
 * into place by the next flush (so a block visible after a crash is always
 * whole).
 */
import { syncFile } from "./_file_io.ts";

/** Background block syncs at once: enough to keep the disk busy, few enough not to thrash. */
const writebacksMax = 2;

/** A block's temporary file and its sync, once started. */
interface PendingBlock {
  tmp: string;
  synced: Promise<void> | null;
}

/** Blocks put since the last flush, by hash. */
export class PendingBlocks {
  #blocks = new Map<string, PendingBlock>();
  /** Blocks waiting for a background sync, and how many syncs run. */
  #writebackQueue: PendingBlock[] = [];
  #writebacksRunning = 0;
  /** Blocks being written to their temporary file: true once added (false: stored already). */
  #writing = new Map<string, Promise<boolean>>();

  /** True when `hash` was put since the last flush (written whole). */
  has(hash: string): boolean {
    return this.#blocks.has(hash);
  }

  /** The temporary file of `hash`, when it was put since the last flush. */
  tmpOf(hash: string): string | undefined {
    return this.#blocks.get(hash)?.tmp;
  }

  /** The hashes put since the last flush. */
  hashes(): string[] {
    return [...this.#blocks.keys()];
  }

  /** The write of `hash` under way, if any: it resolves once the block is added. */
  writing(hash: string): Promise<boolean> | undefined {
    return this.#writing.get(hash);
  }

  /**
   * Runs `write`, which writes block `hash` to a new temporary file and
   * returns its path, as the block's write under way; adds the block once
   * written. Resolves to true (the block is new); rejects as `write` does.
   */
  write(hash: string, write: () => Promise<string>): Promise<boolean> {
    const written = write().then((tmp) => {
      this.add(hash, tmp);
      return true;
    }).finally(() => this.#writing.delete(hash));
    this.#writing.set(hash, written);
    return written;
  }

  /** Resolves once every write under way has settled. */
  async settleWrites(): Promise<void> {
    await Promise.allSettled(this.#writing.values());
  }

  /** Takes the block `hash`, whole in `tmp`, and starts its sync. */
  add(hash: string, tmp: string): void {
    const block = { tmp, synced: null as Promise<void> | null };
    this.#blocks.set(hash, block);
    this.#startWriteback(block);
  }

  /** Forgets `hash` (deleted before a flush); its file is the caller's to remove. */
  delete(hash: string): void {
    this.#blocks.delete(hash);
  }

  /**
   * Syncs every block (those a background sync did not make durable) and hands
   * it to `place`, which renames its file into place.
   */
  async settleAll(place: (hash: string, tmp: string) => void): Promise<void> {
    await Promise.all([...this.#blocks].map(([hash, block]) => this.#settle(hash, block, place)));
  }

  /**
   * Syncs new blocks in the background, a few at a time, so that the disk
   * writes while an upload is still arriving and flush() finds most of the
   * work done.
   */
  #startWriteback(block: PendingBlock): void {
    this.#writebackQueue.push(block);
    while (this.#writebacksRunning < writebacksMax && this.#writebackQueue.length > 0) {
      const next = this.#writebackQueue.shift()!;
      this.#writebacksRunning++;
      next.synced = syncFile(next.tmp).finally(() => {
        this.#writebacksRunning--;
        if (this.#writebackQueue.length > 0) this.#startWriteback(this.#writebackQueue.shift()!);
      });
      next.synced.catch(() => {}); // flush() syncs again and reports
    }
  }

  /** Syncs an unsynced block's file, then renames it into place. */
  async #settle(
    hash: string,
    block: PendingBlock,
    place: (hash: string, tmp: string) => void,
  ): Promise<void> {
    // Not yet picked up by the background writeback: sync it here instead.
    const queued = this.#writebackQueue.indexOf(block);
    if (queued >= 0) this.#writebackQueue.splice(queued, 1);
    const synced = block.synced !== null && await block.synced.then(() => true, () => false);
    // Deleted while it was syncing (garbage collected): nothing to put in place.
    if (this.#blocks.get(hash) !== block) return;
    if (!synced) await syncFile(block.tmp);
    if (this.#blocks.get(hash) !== block) return;
    place(hash, block.tmp);
    this.#blocks.delete(hash);
  }
}
