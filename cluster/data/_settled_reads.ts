/**
 * Where the newest copy of each object was found, per read view (see
 * Engine.readObject): under a view nothing changes the objects (a volume
 * nobody may write, at one lease epoch), so a later read goes to that copy
 * alone instead of asking every replica for its stamp first. The copy's stamp
 * is checked on every read of it (_object_reads.ts): one that changed
 * (healing handed the copy off, a replica lost it in a crash) sends the read
 * back to the replicas. Pages read of a copy on another member are kept at its
 * stamp (_remote_pages.ts): under the view that copy does not change.
 */
import type { Stamp } from "./object_link.ts";
import type { NewestRead } from "./_replica_copies.ts";

/** Views remembered at once (the oldest is forgotten first). */
export const settledViewsMax = 256;
/** Objects remembered per view. */
export const settledObjectsMax = 65_536;

/** See the module doc. */
export class SettledReads {
  #views = new Map<string, Map<string, { link: string; stamp: Stamp }>>();

  /** Where a read under `view` found the newest copy of `name` (its member and stamp). */
  get(view: string, name: string): { link: string; stamp: Stamp } | undefined {
    return this.#views.get(view)?.get(name);
  }

  /** The copy found is no longer a replica, or changed: the next read under `view` looks again. */
  forget(view: string, name: string): void {
    this.#views.get(view)?.delete(name);
  }

  /** Forgets `name` under every view (this node writes it). */
  drop(name: string): void {
    for (const objects of this.#views.values()) objects.delete(name);
  }

  /** A read under `view` found the newest copy of `name` at `newest.from`. */
  found(view: string, name: string, newest: NewestRead): void {
    let objects = this.#views.get(view);
    if (objects === undefined) {
      if (this.#views.size >= settledViewsMax) this.#views.delete(this.#views.keys().next().value!);
      this.#views.set(view, objects = new Map());
    }
    if (objects.size >= settledObjectsMax) objects.clear();
    objects.set(name, { link: newest.from.id, stamp: newest.stamp });
  }
}
