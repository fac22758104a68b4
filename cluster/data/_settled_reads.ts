/**
 * Where the newest copy of each object was found, per read view (see
 * Engine.readObject): under a view nothing changes the objects (a volume
 * nobody may write, at one lease epoch), so a later read goes to that copy
 * alone instead of asking every replica for its stamp first. The copy's stamp
 * is checked on every read: one that changed (healing handed the copy off, a
 * replica lost it in a crash) sends the read back to the replicas.
 */
import { type ObjectLink, readAtStamp, type Stamp } from "./object_link.ts";
import type { NewestRead } from "./_replica_copies.ts";

/** Views remembered at once (the oldest is forgotten first). */
export const settledViewsMax = 256;
/** Objects remembered per view. */
export const settledObjectsMax = 65_536;

/** See the module doc. */
export class SettledReads {
  #views = new Map<string, Map<string, { link: string; stamp: Stamp }>>();

  /** Reads `name` from the copy found newest under `view`; false when there is none to read. */
  async read(
    view: string,
    name: string,
    offset: number,
    into: Uint8Array,
    links: ObjectLink[],
  ): Promise<boolean> {
    const found = this.#views.get(view)?.get(name);
    if (found === undefined) return false;
    const link = links.find((link) => link.id === found.link);
    // No longer a replica, or the copy changed: the next read looks again.
    if (link !== undefined && await readAtStamp(link, name, offset, into, found.stamp)) return true;
    this.#views.get(view)?.delete(name);
    return false;
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
