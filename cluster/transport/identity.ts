/**
 * The cluster's identity: a random id made when a cluster is bootstrapped and
 * kept in every member's data directory. Sealed messages carry it, so members
 * of two clusters that share a key never merge; a node that has not joined yet
 * has none and adopts the id of the cluster that answers its join.
 */
import { randomBytes } from "../../core/mod.ts";

/** Where a node keeps and learns the id of its cluster. */
export interface ClusterIdentity {
  /** The id of this node's cluster; null until it bootstrapped or joined one. */
  current(): string | null;
  /**
   * Called when an authenticated message from a member of a cluster arrives at
   * a node that has no id yet (it is joining): the node takes that id for good.
   */
  adopt(id: string): void;
}

/** Length of a cluster id in bytes (hex in text: twice this). */
export const clusterIdBytes = 16;

/** A fresh random cluster id, as lower-case hex. */
export function newClusterId(): string {
  const bytes = randomBytes(clusterIdBytes);
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** True when `id` has the shape of a cluster id. */
export function isClusterId(id: string): boolean {
  return id.length === 2 * clusterIdBytes && /^[0-9a-f]+$/.test(id);
}

/** An in-memory identity (tests; serve wraps one that persists its id). */
export class MemoryIdentity implements ClusterIdentity {
  #id: string | null;
  #listeners: ((id: string) => void)[] = [];

  constructor(id: string | null = null) {
    this.#id = id;
  }

  current(): string | null {
    return this.#id;
  }

  adopt(id: string): void {
    if (this.#id !== null || !isClusterId(id)) return;
    this.#id = id;
    for (const listener of this.#listeners) listener(id);
  }

  /** Calls `listener` once an id is adopted. */
  onAdopt(listener: (id: string) => void): void {
    this.#listeners.push(listener);
  }
}
