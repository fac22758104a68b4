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

  /** True while a caller for `key` runs or waits. */
  busy(key: string): boolean {
    return this.#locks.has(key);
  }
}

/**
 * A FIFO lock with shared and exclusive holders: shared holders run together,
 * an exclusive one alone. A request waits behind every earlier one, so a stream
 * of shared holders cannot starve an exclusive one.
 */
export class SharedMutex {
  #queue: { exclusive: boolean; start: () => void }[] = [];
  #shared = 0;
  #exclusive = false;

  /** Runs `fn` alone, once every earlier holder has finished. */
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    await this.#acquire(true);
    try {
      return await fn();
    } finally {
      this.#exclusive = false;
      this.#drain();
    }
  }

  /** Runs `fn` alongside other shared holders, once earlier exclusive ones have finished. */
  async runShared<T>(fn: () => Promise<T> | T): Promise<T> {
    await this.#acquire(false);
    try {
      return await fn();
    } finally {
      this.#shared--;
      this.#drain();
    }
  }

  #acquire(exclusive: boolean): Promise<void> {
    return new Promise((start) => {
      this.#queue.push({ exclusive, start });
      this.#drain();
    });
  }

  #drain(): void {
    while (this.#queue.length > 0 && !this.#exclusive) {
      const head = this.#queue[0];
      if (head.exclusive && this.#shared > 0) return;
      this.#queue.shift();
      if (head.exclusive) this.#exclusive = true;
      else this.#shared++;
      head.start();
    }
  }
}
