/**
 * A lease nobody here uses goes back to the record. When another node reads a
 * volume this node holds (a forwarded read) while no connection here has it
 * open for writing, no write through this node is under way and none ended for
 * `graceMs`, this node makes what it acknowledged durable and writes the lease
 * free into the record (LeaseMoves.releaseIdle).
 *
 * That is the end of a live migration: the source's connection closes, and the
 * VM reads at its new node before it writes there. Without the release those
 * reads would all go to the old node, a round trip each, and stop when it
 * stops; with it they go to the data (_idle_readers.ts), and the VM's first
 * write at its new node takes the lease without asking anyone to release it.
 * A connection still open here (a VM running, one attached at two nodes) keeps
 * the lease where it is; the grace keeps clients that write in short
 * connections (HTTP, qemu-img runs) from passing it back and forth.
 */
import { type Clock, OpenWriters, type Store } from "../../core/mod.ts";
import type { HeldLeases } from "./_held_leases.ts";
import type { LeaseMoves } from "./_lease_moves.ts";
import { logger } from "../../log/mod.ts";

const log = logger("leases");

/** How long after its last write a lease with no writer open here is given up when read elsewhere. */
export const idleReleaseMsDefault = 1_000;

/** What {@linkcode IdleRelease} needs of its node. */
export interface IdleReleaseOptions {
  store: () => Store;
  clock: Clock;
  leases: HeldLeases;
  moves: LeaseMoves;
  graceMs: number;
}

/** The writes under way at one node and the releases of leases it does not use; see the module doc. */
export class IdleRelease {
  #options: IdleReleaseOptions;
  /** Writes through this node under way, per volume (none: no entry). */
  #writes = new OpenWriters();
  /** Volumes whose release is under way. */
  #releasing = new Set<string>();

  constructor(options: IdleReleaseOptions) {
    this.#options = options;
  }

  /** A write of `name` through this node begins; the function returned notes its end (once). */
  writeBegins(name: string): () => void {
    const ended = this.#writes.open(name);
    return () => {
      if (ended()) this.#options.leases.wrote(name);
    };
  }

  /** Another node read `name` through this node's lease: give it up if nothing here uses it. */
  readElsewhere(name: string): void {
    if (this.#releasing.has(name) || !this.#unused(name)) return;
    this.#releasing.add(name);
    this.#options.moves.releaseIdle(name, () => this.#unused(name))
      .catch((error) => {
        log.warn("could not give up the unused write lease of volume {volume}: {error}", {
          volume: name,
          error,
        });
      })
      .finally(() => this.#releasing.delete(name));
  }

  /** True when this node holds `name` and nothing here wrote it, or has it open, or is writing. */
  #unused(name: string): boolean {
    const held = this.#options.leases.get(name);
    return held !== undefined && this.#writes.count(name) === 0 &&
      this.#options.store().writersOf(name) === 0 &&
      this.#options.clock.now() - held.lastWriteMs >= this.#options.graceMs;
  }
}
