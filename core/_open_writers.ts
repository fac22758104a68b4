/**
 * The connections that have a volume open for writing on this node (NBD
 * connections to a volume's export: every one may write). A rollback asks
 * here before it changes a volume under a running VM (_lifecycle.ts).
 */
export class OpenWriters {
  #counts = new Map<string, number>();

  /**
   * Notes one more writer of volume `name`; the function returned notes its
   * end, once: true the first time it is called, false (and nothing done) after.
   */
  open(name: string): () => boolean {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + 1);
    let closed = false;
    return () => {
      if (closed) return false;
      closed = true;
      const count = this.#counts.get(name)! - 1;
      if (count === 0) this.#counts.delete(name);
      else this.#counts.set(name, count);
      return true;
    };
  }

  /** How many connections have volume `name` open for writing on this node now. */
  count(name: string): number {
    return this.#counts.get(name) ?? 0;
  }
}
