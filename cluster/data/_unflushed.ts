/**
 * What a writer of objects has not made durable yet (replicated_objects.ts):
 * per replica, the objects changed there since their last flush; the objects
 * a flush fell short on (every later flush tries them again); the objects
 * whose acknowledged writes were lost since their volume's last flush, which
 * that volume's next flush reports whoever found the loss (a write that found
 * it fails, but the writes acknowledged before it were lost as well); of
 * those, the ones a flush of every volume found, which the object's next read
 * or write reports too; and the objects a flush under way took, which a later
 * flush of the same objects waits for (its outcome for them is the later
 * one's too).
 */
import { parseObjectName } from "../../core/block_map.ts";
import type { ObjectLink } from "./object_link.ts";

/** Objects changed on one replica since their last flush. */
export interface PendingOnReplica {
  link: ObjectLink;
  names: Set<string>;
}

/** See the module doc. */
export class Unflushed {
  #byReplica = new Map<string, PendingOnReplica>();
  #short = new Set<string>();
  #lostUnheard = new Set<string>();
  #lostSinceFlush = new Set<string>();
  #flushing = new Map<string, Promise<void>>();

  /** `name` changed on `link` since its last flush there. */
  note(link: ObjectLink, name: string): void {
    let entry = this.#byReplica.get(link.id);
    if (entry === undefined) this.#byReplica.set(link.id, entry = { link, names: new Set() });
    entry.names.add(name);
  }

  /**
   * Every copy lost the writes of `name` acknowledged since its last flush:
   * nothing of it is left to flush, and the next flush of its volume fails.
   */
  lost(name: string): void {
    this.drop(name);
    this.#lostSinceFlush.add(name);
  }

  /** Nothing of `name` is left to flush here. */
  drop(name: string): void {
    this.#short.delete(name);
    for (const { names } of this.#byReplica.values()) names.delete(name);
  }

  /**
   * Takes the objects in `ofScope` changed since their last flush, once no
   * flush under way holds any object in scope; `done` marks this flush over.
   */
  async take(
    ofScope: (name: string) => boolean,
  ): Promise<{ pending: PendingOnReplica[]; done: () => void }> {
    for (;;) {
      // Taken below without a pause after this finds none: no flush slips in between.
      const earlier = [...this.#flushing].filter(([name]) => ofScope(name)).map(([, d]) => d);
      if (earlier.length === 0) break;
      await Promise.all(earlier);
    }
    const pending: PendingOnReplica[] = [];
    for (const { link, names } of this.#byReplica.values()) {
      const taken = new Set([...names].filter(ofScope));
      for (const name of taken) names.delete(name);
      if (taken.size > 0) pending.push({ link, names: taken });
    }
    const taken = new Set(pending.flatMap(({ names }) => [...names]));
    let finish = () => {};
    const over = new Promise<void>((resolve) => finish = resolve);
    for (const name of taken) this.#flushing.set(name, over);
    const done = () => {
      for (const name of taken) if (this.#flushing.get(name) === over) this.#flushing.delete(name);
      finish();
    };
    return { pending, done };
  }

  /** The objects in `ofScope` a flush fell short on. */
  shortOf(ofScope: (name: string) => boolean): string[] {
    return [...this.#short].filter(ofScope);
  }

  /** A flush could not make `name` durable (true) or did (false). */
  setShort(name: string, short: boolean): void {
    if (short) this.#short.add(name);
    else this.#short.delete(name);
  }

  /** A flush of every volume found these objects' writes lost: their next read or write says so. */
  addUnheard(names: string[]): void {
    for (const name of names) this.#lostUnheard.add(name);
  }

  /** True (once) when a loss of `name` a flush of every volume found waits to be heard. */
  takeUnheard(name: string): boolean {
    return this.#lostUnheard.delete(name);
  }

  /**
   * The losses in `ofScope` found since the last flush of their volume, for
   * this flush of the volume to report (heard then: reads and writes need not).
   */
  takeLostOf(ofScope: (name: string) => boolean): string[] {
    const lost = [...this.#lostSinceFlush].filter(ofScope);
    for (const name of lost) {
      this.#lostSinceFlush.delete(name);
      this.#lostUnheard.delete(name);
    }
    return lost;
  }

  /** Forgets the volume `uid`'s objects (another node writes it now). */
  forgetVolume(uid: string): void {
    const ofVolume = (name: string) => parseObjectName(name).uid === uid;
    for (const name of this.#lostUnheard) if (ofVolume(name)) this.#lostUnheard.delete(name);
    for (const name of this.#lostSinceFlush) if (ofVolume(name)) this.#lostSinceFlush.delete(name);
    for (const name of this.#short) if (ofVolume(name)) this.#short.delete(name);
    for (const { names } of this.#byReplica.values()) {
      for (const name of names) if (ofVolume(name)) names.delete(name);
    }
  }
}
