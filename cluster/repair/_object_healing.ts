/**
 * Healing of the objects this node stores (healer.ts runs the passes): the
 * first live replica holding the newest copy of an object copies it to the
 * replicas that lag behind, a replica that finds itself behind takes the newest
 * copy at once, and a node that is no longer a replica hands its copy off once
 * every replica holds it durably.
 */
import { compareStamps, type Stamp } from "../data/mod.ts";
import type { BlockPeer } from "../data/mod.ts";
import type { HealingContext } from "./_healing_context.ts";

/** Local objects whose replicas' stamps one call asks for (at most object.stamps' limit). */
const objectsPerAskMax = 1024;

/** What {@linkcode ObjectHealing} needs of its healer. */
export interface ObjectHealingOptions extends HealingContext {
  /** True once the healer is stopped: a pass ends at the next object. */
  stopped: () => boolean;
  /**
   * Waits before copies found needed are made, so that changes on their way
   * land first (resolves early when the healer stops).
   */
  settle: () => Promise<void>;
}

/**
 * An object some replica lags behind at the first look of a batch: either
 * this node behind `leader` (which held `stamp`), or `peers` behind this
 * node's copy at `stamp`.
 */
interface Lag {
  name: string;
  stamp: Stamp;
  leader?: BlockPeer;
  peers: BlockPeer[];
  /** The object's replicas, and those of them found current at the first look. */
  replicas: BlockPeer[];
  current: Set<BlockPeer>;
  mine: boolean;
  /** Counted short at the first look (a replica was not live or silent). */
  unsure: boolean;
}

/** The object side of a healing pass. */
export class ObjectHealing {
  #options: ObjectHealingOptions;

  constructor(options: ObjectHealingOptions) {
    this.#options = options;
  }

  /** Copies each local object to the replicas behind it, or hands it off. */
  async copies(budget: { copies: number; short: number }): Promise<void> {
    const { engine } = this.#options;
    let batch: string[] = [];
    for await (const name of engine.local.listObjects()) {
      batch.push(name);
      if (batch.length < objectsPerAskMax) continue;
      if (!await this.#objectBatch(batch, budget)) return;
      batch = [];
    }
    if (batch.length > 0) await this.#objectBatch(batch, budget);
  }

  /**
   * The stamps each live replica holds of `names` (those placed on it), one
   * call per replica; a replica that does not answer is left out (its objects
   * are left alone this pass). They may be a little old by the time an object
   * is looked at: copies apply only when newer, and a hand-off checks again.
   */
  async #peerStamps(names: string[]): Promise<Map<string, Map<string, Stamp>>> {
    const { engine } = this.#options;
    const asks = new Map<string, { peer: BlockPeer; names: string[] }>();
    for (const name of names) {
      for (const peer of engine.replicaPeers(name)) {
        if (peer.id === engine.selfId || !engine.isLive(peer.id)) continue;
        let ask = asks.get(peer.id);
        if (ask === undefined) asks.set(peer.id, ask = { peer, names: [] });
        ask.names.push(name);
      }
    }
    const known = new Map<string, Map<string, Stamp>>();
    await Promise.all([...asks.values()].map(async ({ peer, names }) => {
      try {
        const reply = await this.#options.rpc.call(peer.address, "object.stamps", {
          header: { names },
        });
        const stamps = reply.header.stamps as Stamp[];
        known.set(peer.id, new Map(names.map((name, i) => [name, stamps[i]])));
      } catch {
        // unreachable now: its objects wait for the next pass
      }
    }));
    return known;
  }

  /**
   * One batch of local objects; false when the pass must stop (stopped, or out
   * of copies). A replica found behind at the first look may only be a change
   * or two short while a writer's changes are on their way (the stamps of a
   * batch are asked before each object's own is read): copying the whole object
   * then cost a read and a write of up to 4 MiB per object being written, and
   * another walk, for as long as the writes went on. Such lags are looked at
   * again once the batch settled: a replica still below the stamp the one
   * ahead held at the first look gets the copy.
   */
  async #objectBatch(
    names: string[],
    budget: { copies: number; short: number },
  ): Promise<boolean> {
    const known = await this.#peerStamps(names);
    const lags: Lag[] = [];
    for (const name of names) {
      if (this.#options.stopped()) return false;
      const lag = await this.#look(name, known, budget);
      if (lag !== null) lags.push(lag);
    }
    if (lags.length === 0) return true;
    await this.#options.settle();
    if (this.#options.stopped()) return false;
    const again = await this.#peerStamps(lags.map(({ name }) => name));
    for (const lag of lags) {
      if (this.#options.stopped()) return false;
      if (!await this.#catchUp(lag, again, budget)) return false;
    }
    return true;
  }

  /**
   * The first look at one object: a lag to look at again (see #objectBatch), or
   * null (in place, handed off, or not this node's to copy).
   */
  async #look(
    name: string,
    known: Map<string, Map<string, Stamp>>,
    budget: { short: number },
  ): Promise<Lag | null> {
    const { engine } = this.#options;
    const replicas = engine.replicaPeers(name);
    const mine = replicas.some((peer) => peer.id === engine.selfId);
    const others = replicas.filter((peer) => peer.id !== engine.selfId && engine.isLive(peer.id));
    const [stamp] = await engine.replica.stamps([name]);
    const stamps = others.map((peer) => known.get(peer.id)?.get(name) ?? null);
    if (mine) {
      // The first live replica whose copy is the newest copies it to the others.
      let best = stamp;
      for (const other of stamps) {
        if (other !== null && compareStamps(other, best) > 0) best = other;
      }
      const stampOf = (id: string) =>
        id === engine.selfId ? stamp : stamps[others.findIndex((peer) => peer.id === id)];
      const leader = replicas.find((peer) => {
        const copy = engine.isLive(peer.id) ? stampOf(peer.id) : null;
        return copy != null && compareStamps(copy, best) === 0;
      });
      if (leader === undefined || leader.id !== engine.selfId) {
        // Behind a replica that holds the newest: take it from there rather than wait
        // for that replica's next walk, which comes only with an event it sees (seed
        // 2109064 with joins, leaves and replacements: a replica back from a crash missed
        // a flush made durable on the other alone; that one, seeing no change, did not
        // walk, and died for good 24 s later with the only copy).
        if (leader === undefined || compareStamps(stamp, best) >= 0) return null;
        const current = new Set<BlockPeer>();
        return { name, stamp: best, leader, peers: [], replicas, current, mine, unsure: false };
      }
    }
    const behind = others.filter((_, i) =>
      stamps[i] !== null && compareStamps(stamps[i]!, stamp) < 0
    );
    // A replica not live or silent may be behind as well: short, so the next pass walks.
    const unsure = others.length < replicas.length - (mine ? 1 : 0) ||
      stamps.some((other) => other === null);
    if (unsure) budget.short++;
    const current = new Set(
      others.filter((_, i) => stamps[i] !== null && compareStamps(stamps[i]!, stamp) >= 0),
    );
    const lag = { name, stamp, peers: behind, replicas, current, mine, unsure };
    if (behind.length > 0) return lag;
    await this.#handOff(lag);
    return null;
  }

  /** Copies what still lags once the batch settled; false when out of copies. */
  async #catchUp(
    lag: Lag,
    again: Map<string, Map<string, Stamp>>,
    budget: { copies: number; short: number },
  ): Promise<boolean> {
    const { engine } = this.#options;
    const { name } = lag;
    if (lag.leader !== undefined) {
      const [stamp] = await engine.replica.stamps([name]);
      if (compareStamps(stamp, lag.stamp) >= 0) return true;
      if (budget.copies <= 0) return false;
      budget.copies--;
      await this.#pull(name, lag.leader);
      return true;
    }
    let short = lag.unsure;
    for (const peer of lag.peers) {
      const stamp = again.get(peer.id)?.get(name);
      if (stamp !== undefined && compareStamps(stamp, lag.stamp) >= 0) {
        lag.current.add(peer);
        continue;
      }
      if (!short) budget.short++;
      short = true;
      if (stamp === undefined) continue; // silent now: the next walk
      if (budget.copies <= 0) return false;
      budget.copies--;
      try {
        const { data, stamp } = await engine.replica.read(name, 0, -1);
        await this.#options.rpc.call(peer.address, "object.change", {
          header: {
            name,
            epoch: stamp[0],
            version: stamp[1],
            replace: true,
            heal: true,
            offset: 0,
            remove: data.length === 0,
          },
          data,
        });
        await this.#options.rpc.call(peer.address, "object.flush", { header: {} });
        lag.current.add(peer);
        this.#options.status.objectsCopied++;
      } catch (error) {
        this.#options.failed(error);
      }
    }
    await this.#handOff(lag);
    return true;
  }

  /**
   * Not a replica (any more): the copy goes once every replica is live and
   * holds it durably, with its stamp, unless it changed meanwhile.
   */
  async #handOff({ name, stamp, replicas, current, mine }: Lag): Promise<void> {
    const { engine } = this.#options;
    if (mine || !replicas.every((peer) => current.has(peer))) return;
    if (await this.#durableOnAll(name, stamp, replicas)) {
      if (await engine.replica.drop(name, stamp)) this.#options.status.objectsHandedOff++;
    }
  }

  /** Copies `peer`'s copy of `name` here (only when newer than this one) and syncs it. */
  async #pull(name: string, peer: BlockPeer): Promise<void> {
    const { engine } = this.#options;
    try {
      const reply = await this.#options.rpc.call(peer.address, "object.read", {
        header: { name, offset: 0, length: -1 },
      });
      const [epoch, version] = reply.header.stamp as Stamp;
      const data = reply.data ?? new Uint8Array();
      const change = { epoch, version, replace: true, heal: true, offset: 0, data };
      const applied = await engine.replica.change(name, { ...change, remove: data.length === 0 });
      reply.release?.();
      await engine.replica.flush([name]);
      if (applied.applied) this.#options.status.objectsCopied++;
    } catch (error) {
      this.#options.failed(error);
    }
  }

  /** True when every one of `peers` holds `name` durably at `stamp` or later. */
  async #durableOnAll(name: string, stamp: Stamp, peers: BlockPeer[]): Promise<boolean> {
    const answers = await Promise.allSettled(peers.map(async (peer) => {
      const reply = await this.#options.rpc.call(peer.address, "object.flush", {
        header: { names: [name] },
      });
      return (reply.header.stamps as Stamp[])[0];
    }));
    return answers.every((answer) =>
      answer.status === "fulfilled" && compareStamps(answer.value, stamp) >= 0
    );
  }
}
