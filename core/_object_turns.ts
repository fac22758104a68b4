/**
 * The order of the accesses of each object file (_object_files.ts): a change
 * that must wait (for large reads asked before it, or for a write running off
 * the event loop) becomes the object's turn, which every later access waits
 * for, so that each sees the changes asked before it and none after, as when
 * every access was done on the spot. Objects nothing waits on cost nothing.
 */

/** See the module doc. */
export class ObjectTurns {
  /**
   * Per object, while a change waits for large reads asked before it or runs
   * off the event loop (a direct write): what every later access waits
   * for, so that each sees the changes asked before it, in order, as when
   * every access was done on the spot.
   */
  #turns = new Map<string, Promise<void>>();
  /** Per object, reads waiting for a turn: a change asked after them waits for them too. */
  #waiting = new Map<string, Set<Promise<void>>>();

  /** What every access of `path` asked now waits for; undefined when nothing. */
  of(path: string): Promise<void> | undefined {
    return this.#turns.get(path);
  }

  /**
   * What a change of `path` asked now waits for: `reading`, the large reads of
   * it under way (they return the bytes from before it), and the changes and
   * reads waiting already; null when nothing is (it is done on the spot).
   */
  change(path: string, reading: Promise<unknown> | null): Promise<void> | null {
    const before = this.#turns.get(path) ?? null;
    const waiting = this.#waiting.get(path);
    if (reading === null && waiting === undefined) return before;
    return this.take(path, Promise.all([before, reading, ...waiting ?? []]));
  }

  /**
   * Makes `until` the turn of `path`: what every access asked from now on
   * waits for; it leaves the map once settled, unless a later turn took its
   * place. Returns the turn (it never rejects).
   */
  take(path: string, until: Promise<unknown>): Promise<void> {
    const turn: Promise<void> = until.then(() => {}, () => {}).then(() => {
      if (this.#turns.get(path) === turn) this.#turns.delete(path);
    });
    this.#turns.set(path, turn);
    return turn;
  }

  /**
   * Runs a read of `path` (`access`) in its turn: at once when no change
   * waits, else after the changes asked before it, and then every change
   * asked meanwhile waits for it in turn (change()).
   */
  run<T>(path: string, access: () => Promise<T>): Promise<T> {
    const turn = this.#turns.get(path);
    if (turn === undefined) return access();
    const done = turn.then(access);
    const settled: Promise<void> = done.then(() => {}, () => {}).then(() => {
      const waiting = this.#waiting.get(path)!;
      waiting.delete(settled);
      if (waiting.size === 0) this.#waiting.delete(path);
    });
    let waiting = this.#waiting.get(path);
    if (waiting === undefined) this.#waiting.set(path, waiting = new Set());
    waiting.add(settled);
    return done;
  }
}
