/**
 * A FIFO async mutex. Writers of one volume, and compare-and-set of one key,
 * queue behind each other; everything else runs concurrently.
 */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `fn` once every earlier caller has finished. */
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(() => {}, () => {});
    return result;
  }
}

/** One {@linkcode Mutex} per key, dropped when idle. */
export class KeyedMutex {
  #locks = new Map<string, { mutex: Mutex; users: number }>();

  /** Runs `fn` once every earlier caller for `key` has finished. */
  async run<T>(key: string, fn: () => Promise<T> | T): Promise<T> {
    let lock = this.#locks.get(key);
    if (lock === undefined) {
      lock = { mutex: new Mutex(), users: 0 };
      this.#locks.set(key, lock);
    }
    lock.users++;
    try {
      return await lock.mutex.run(fn);
    } finally {
      if (--lock.users === 0) this.#locks.delete(key);
    }
  }
}
