/**
 * Map pages being stored whose record is not written yet (map_store.ts):
 * garbage collection keeps them, on this node (`Store`'s pins) and in a
 * cluster (every member's pins are asked before each mark). A pin is taken
 * before a page is stored and released once the record naming it is written
 * (or failed); releasing tells a collection under way to keep the pages
 * (`Collector.keep`), since its marks may have read the record before.
 */
export class PagePins {
  #counts = new Map<string, number>();
  #released: (ids: string[]) => void;

  constructor(released: (ids: string[]) => void) {
    this.#released = released;
  }

  /** Pins `ids`; the function returned releases them (once). */
  pin(ids: string[]): () => void {
    for (const id of ids) this.#counts.set(id, (this.#counts.get(id) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#released(ids);
      for (const id of ids) {
        const count = this.#counts.get(id)! - 1;
        if (count === 0) this.#counts.delete(id);
        else this.#counts.set(id, count);
      }
    };
  }

  /** True when page `id` is pinned. */
  has(id: string): boolean {
    return this.#counts.has(id);
  }

  /** Every pinned page. */
  list(): string[] {
    return [...this.#counts.keys()];
  }
}
