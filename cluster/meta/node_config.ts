/**
 * What a node knows of its cluster, durably: the cluster's id and the newest
 * committed metadata configuration. Both only move forward: an id is taken
 * once (at bootstrap, or from the cluster a node joins), and a configuration
 * replaces the known one only when its epoch is higher.
 *
 * What the acceptor enforces, and what a change of voters counts as
 * installed, is the saved configuration alone (`current`, `install`): a
 * majority that installed a newer one has stopped older proposers only if
 * none of them can forget it in a crash. A node whose disk is full can still
 * follow the cluster as a proposer and a reader: it `learn`s a newer
 * configuration in memory when it cannot save it, uses it to address the
 * voters (`newest`), and saves it once there is room.
 */
import { Mutex } from "../../core/_mutex.ts";
import { type ClusterIdentity, isClusterId, newClusterId } from "../transport/mod.ts";
import type { ConfigHolder } from "./caspaxos.ts";
import type { MetaConfig } from "./config.ts";
import { isNoSpace } from "../../core/mod.ts";
import { logger } from "../../log/mod.ts";

const log = logger("metadata");

/** The persisted state. */
export interface NodeConfigState {
  clusterId: string | null;
  config: MetaConfig | null;
}

/** Durable storage of the state: `save` resolves once it would survive a crash. */
export interface NodeConfigDisk {
  save(state: NodeConfigState): Promise<void>;
}

/** The node's cluster id and configuration (see the module doc). */
export class NodeConfig implements ConfigHolder {
  /** This node's cluster id, as sealed messages need it. */
  readonly identity: ClusterIdentity;
  #state: NodeConfigState;
  #disk: NodeConfigDisk;
  #writes = new Mutex();
  #listeners: ((config: MetaConfig) => void)[] = [];
  /** A configuration newer than the saved one that could not be saved (a full disk). */
  #learned: MetaConfig | null = null;

  constructor(state: NodeConfigState, disk: NodeConfigDisk) {
    this.#state = structuredClone(state);
    this.#disk = disk;
    this.identity = {
      current: () => this.#state.clusterId,
      adopt: (id) => {
        if (this.#state.clusterId !== null || !isClusterId(id)) return;
        this.#state.clusterId = id;
        this.#writes.run(() => this.#disk.save(this.#state)).catch((error) =>
          log.error("cannot save the cluster id: {error}", { error: error.message })
        );
      },
    };
  }

  /** The newest committed configuration this node knows; null before it joined. */
  current(): MetaConfig | null {
    return this.#state.config;
  }

  /**
   * The newest configuration this node knows, saved or only learned: where its
   * proposals and listings go (an acceptor at an older epoch says it is stale).
   */
  newest(): MetaConfig | null {
    const learned = this.#learned;
    const saved = this.#state.config;
    return learned !== null && learned.epoch > (saved?.epoch ?? 0) ? learned : saved;
  }

  /**
   * Installs `config` when it is newer; when the disk has no room for it, keeps
   * it in memory for `newest()` (see the module doc) and saves it at a later call.
   */
  async learn(config: MetaConfig): Promise<void> {
    const learned = this.#learned;
    if (learned !== null && learned.epoch >= config.epoch) {
      config = learned; // try to save it again
    }
    try {
      await this.install(config);
      if ((this.#learned?.epoch ?? 0) <= config.epoch) this.#learned = null;
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      if ((this.#state.config?.epoch ?? 0) >= config.epoch) return;
      if (learned === null || learned.epoch < config.epoch) {
        log.warn(
          "cannot save metadata configuration epoch {epoch}: the disk is full; " +
            "using it from memory until it can be saved",
          { epoch: config.epoch },
        );
        this.#learned = structuredClone(config);
      }
    }
  }

  /** A copy of the whole state (status pages). */
  state(): NodeConfigState {
    return structuredClone(this.#state);
  }

  /** Makes `config` known, durably, when it is newer than the known one. */
  install(config: MetaConfig): Promise<void> {
    return this.#writes.run(async () => {
      const known = this.#state;
      if (known.clusterId !== null && known.clusterId !== config.clusterId) {
        throw new TypeError(
          `Cannot install a configuration of cluster ${config.clusterId}: this node is in ${known.clusterId}`,
        );
      }
      if (known.config !== null && config.epoch <= known.config.epoch) return;
      const next = { clusterId: config.clusterId, config: structuredClone(config) };
      await this.#disk.save(next);
      this.#state = next;
      for (const listener of this.#listeners) listener(config);
    });
  }

  /**
   * Creates a new cluster with this node as its only voter, unless the node
   * already belongs to one. Returns true when it created one.
   */
  async bootstrap(selfId: string): Promise<boolean> {
    if (this.#state.config !== null || this.#state.clusterId !== null) return false;
    await this.install({ epoch: 1, clusterId: newClusterId(), voters: [selfId], next: null });
    return true;
  }

  /** Calls `listener` with every newer configuration installed. */
  onInstall(listener: (config: MetaConfig) => void): void {
    this.#listeners.push(listener);
  }
}
