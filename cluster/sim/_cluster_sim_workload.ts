/**
 * The clients of the whole-cluster simulation. Each volume has one client (a
 * VM): it writes and flushes through a lease handle at its current member,
 * held open there as an NBD connection is (a writer of the volume there),
 * migrates to another member now and then (it closes that handle; its next
 * write moves the lease, unless a read elsewhere had it given up before),
 * reads through any member, snapshots, clones and deletes. Now and then
 * another member writes the same volume at once (lease contention). Every
 * outcome is checked against the volume's model (`_cluster_sim_model.ts`).
 * Beside them, the catalogue's clients upload, clone and delete images,
 * delete snapshots and collect garbage (`_cluster_sim_catalogue.ts`).
 *
 * @module
 */
import type { VolumeHandle } from "../../core/mod.ts";
import { type ClusterRuntime, simBlockSize } from "./_cluster_sim_node.ts";
import { LossWatch } from "./_cluster_sim_losses.ts";
import {
  sectorBytes,
  sectorPattern,
  sectorPieces,
  sectorTags,
  volumeBlocks,
  VolumeModel,
  volumeSectors,
} from "./_cluster_sim_model.ts";
import { type Attempt, attempt, MetaClients } from "./_cluster_sim_meta.ts";
import { CatalogueClients } from "./_cluster_sim_catalogue.ts";
import type { ClusterSim } from "./cluster_sim.ts";
/** Most sectors one write covers. */
const writeSectorsMax = 6;
/** Live volumes the catalogue client keeps at least. */
const liveVolumesMin = 3;
/** After the faults, time for healing between the last collection and the final reads. */
const finalHealMs = 5_000;

/** A volume's client: where it writes from, through which handle. */
interface VolumeClient {
  model: VolumeModel;
  node: string | null;
  incarnation: number;
  handle: VolumeHandle | null;
  /** Notes the end of the handle's connection at its member (Store.noteWriter). */
  closeWriter: () => void;
  /** Members that acknowledged writes since the last flush, and when they first did. */
  dirtySince: Map<string, number>;
  /** Reads through random members still to do before the first write (`bootReads`). */
  bootReads: number;
  /**
   * The handle that acknowledged writes since the last flush (null: none): a
   * FLUSH makes them durable only through it; through another member's handle
   * it is a no-op, and they become durable when the lease moves (its release).
   */
  dirty: VolumeHandle | null;
}

/** The clients; see the module doc. */
export class ClusterWorkload extends MetaClients {
  #clients: VolumeClient[] = [];
  #untilMs = 0;
  #losses: LossWatch;
  #catalogue: CatalogueClients;
  /** The catalogue's clients run (off: volumes only, see `ClusterSimOptions.volumesOnly`). */
  #withCatalogue: boolean;
  /** New volumes are read before their first write (`ClusterSimOptions.bootReads`). */
  #bootReads: boolean;
  /** Reads of several sectors go as several requests at once (`ClusterSimOptions.readBursts`). */
  #readBursts: boolean;

  constructor(
    sim: ClusterSim,
    options: { catalogue: boolean; bootReads: boolean; readBursts: boolean },
  ) {
    super(sim);
    this.#withCatalogue = options.catalogue;
    this.#bootReads = options.bootReads;
    this.#readBursts = options.readBursts;
    this.#losses = new LossWatch(sim);
    this.#catalogue = new CatalogueClients(this, {
      volumes: () => this.#clients.map((client) => client.model),
      startVolume: (model) => this.#startClient(model),
    });
  }

  /** Starts the clients; they stop starting operations at `untilMs`. */
  start(untilMs: number): void {
    this.#untilMs = untilMs;
    this.startMeta(untilMs);
    if (this.#withCatalogue) this.#catalogue.start(untilMs);
    this.#losses.start(() => this.#clients.map((client) => client.model.name));
    const catalogue = async () => {
      if (this.sim.world.now() >= untilMs) return;
      const live = this.#clients.filter((client) => client.model.state === "live").length;
      if (live < liveVolumesMin) await this.#create();
      this.sim.world.at(500 + this.random() * 1500, catalogue);
    };
    catalogue();
  }

  async #create(): Promise<void> {
    const name = this.newName("v");
    const outcome = await this.#attempt(
      this.randomNode(),
      `create ${name}`,
      (runtime) => runtime.store.createVolume({ name, size: volumeBlocks * simBlockSize }),
    );
    if (outcome.ok) this.#startClient(VolumeModel.empty(name, volumeSectors));
  }

  #startClient(model: VolumeModel): void {
    const client: VolumeClient = {
      model,
      node: null,
      incarnation: 0,
      handle: null,
      closeWriter: () => {},
      dirtySince: new Map(),
      bootReads: this.#bootReads ? 2 + this.sim.world.random.int(8) : 0,
      dirty: null,
    };
    this.#clients.push(client);
    const step = async () => {
      if (this.sim.world.now() >= this.#untilMs || model.state !== "live") return;
      model.busy = true;
      await this.#operate(client);
      model.busy = false;
      this.sim.world.at(10 + this.random() * 190, step);
    };
    step();
  }

  async #operate(client: VolumeClient): Promise<void> {
    if (client.bootReads > 0) {
      client.bootReads--;
      return await this.#read(client, this.randomNode(), "boot-read");
    }
    const roll = this.random();
    if (roll < 0.42) await this.#write(client);
    else if (roll < 0.64) await this.#read(client, this.randomNode());
    else if (roll < 0.78) await this.#flush(client);
    else if (roll < 0.86) this.#close(client); // migrates: the next write moves the lease
    else if (roll < 0.91) await this.#snapshot(client);
    else if (roll < 0.94) await this.#clone(client.model);
    else if (roll < 0.97) this.#contend(client.model);
    else if (roll < 0.98) await this.#delete(client);
    else await this.#catalogue.probeDeleted(this.randomNode());
  }

  /** The client's handle, opened at a random running member when it has none there. */
  #handle(client: VolumeClient): { node: string; handle: VolumeHandle | null } {
    const runtime = client.node === null ? null : this.sim.runtimeOf(client.node);
    if (client.handle === null || runtime === null || runtime.incarnation !== client.incarnation) {
      const node = this.randomNode();
      client.node = node;
      client.incarnation = this.sim.runtimeOf(node)?.incarnation ?? 0;
      this.#close(client);
    }
    return { node: client.node!, handle: client.handle };
  }

  /**
   * `handle`, just opened at `runtime`, as the client's NBD connection there: a
   * writer of the volume (`client.handle ??= this.#connected(..., await open())`:
   * the same awaits as before connections were counted, so earlier seeds keep
   * their schedules).
   */
  #connected(client: VolumeClient, runtime: ClusterRuntime, handle: VolumeHandle): VolumeHandle {
    client.closeWriter = runtime.store.noteWriter(client.model.name);
    return handle;
  }

  /** The client's connection ends (it migrates, or its write failed). */
  #close(client: VolumeClient): void {
    client.closeWriter();
    client.closeWriter = () => {};
    client.handle = null;
  }

  async #write(client: VolumeClient): Promise<void> {
    const { model } = client;
    const { first, count, tag, data } = this.#randomWrite();
    const { node } = this.#handle(client);
    const startedMs = this.sim.world.now();
    const outcome = await this.#attempt(
      node,
      `write ${model.name} ${first}+${count} #${tag}`,
      async (runtime) => {
        client.handle ??= this.#connected(client, runtime, await runtime.leases.open(model.name));
        await client.handle.write(first * sectorBytes, data, false);
      },
    );
    if (outcome.ok) {
      // Through another handle than the last writes': the lease moved, and its
      // release may have made them durable (or a takeover dropped them).
      if (client.dirty !== null && client.dirty !== client.handle) model.flushFailed();
      client.dirty = client.handle;
      if (!client.dirtySince.has(node)) client.dirtySince.set(node, this.sim.world.now());
      return model.acknowledged(first, count, tag, startedMs);
    }
    model.failed(first, count, tag);
    this.#close(client);
    if (outcome.stuck) model.state = "unknown";
  }

  async #read(client: VolumeClient, node: string, kind = "read"): Promise<void> {
    const { model } = client;
    const first = this.sim.world.random.int(model.sectors);
    const count = 1 + this.sim.world.random.int(model.sectors - first);
    const into = new Uint8Array(count * sectorBytes);
    // With read bursts, a third of the reads of several sectors go as several requests at
    // once, as a guest's queued reads do.
    const pieces = this.#readBursts && count > 1 && this.sim.world.random.int(3) === 0
      ? 2 + this.sim.world.random.int(Math.min(3, count - 1))
      : 1;
    const outcome = await this.#attempt(
      node,
      pieces > 1
        ? `${kind}-burst ${model.name} ${first}+${count} in ${pieces}`
        : `${kind} ${model.name} ${first}+${count}`,
      async (runtime) => {
        const handle = await runtime.leases.open(model.name);
        await Promise.all(
          sectorPieces(count, pieces).map(([from, sectors]) => {
            const piece = into.subarray(from * sectorBytes, (from + sectors) * sectorBytes);
            return handle.read(
              { offset: (first + from) * sectorBytes, length: piece.length },
              piece,
            );
          }),
        );
      },
    );
    if (!outcome.ok || model.state !== "live") return;
    // A crash or a takeover since the first write not flushed yet may have kept any
    // subset of the writes since the last flush, and a read may see that already.
    if (this.#losses.lost(model.name, client.dirtySince)) model.mayHaveLost();
    const tags = sectorTags(into, first);
    this.log.push(`  read ${tags.join(",")}`);
    this.violations.push(...model.check(first, tags, `read at ${node}`));
  }

  async #flush(client: VolumeClient): Promise<void> {
    const { node } = this.#handle(client);
    const through = client.handle;
    const outcome = await this.#attempt(node, `flush ${client.model.name}`, async (runtime) => {
      client.handle ??= this.#connected(
        client,
        runtime,
        await runtime.leases.open(client.model.name),
      );
      await client.handle.flush();
    });
    // A flush through another handle than the writes' says nothing about them,
    // unless it fails: it may have made some durable, or reported them lost.
    if (through === client.dirty || client.dirty === null) this.#flushed(client, outcome);
    else if (!outcome.ok || this.#losses.lost(client.model.name, client.dirtySince)) {
      // It failed (it may have made some durable, or reported them lost), or a crash or
      // takeover since the writes may have kept any subset of them.
      client.model.flushFailed();
    }
  }

  #flushed(client: VolumeClient, outcome: Attempt): void {
    if (outcome.ok) {
      client.model.flushed(this.#losses.lost(client.model.name, client.dirtySince));
      if (this.sim.trace !== null) this.sim.note(`${client.model.name} flushed: ${client.model}`);
      client.dirtySince.clear();
      client.dirty = null;
      return;
    }
    client.model.flushFailed();
    if (outcome.stuck) client.model.state = "unknown";
  }

  async #snapshot(client: VolumeClient): Promise<void> {
    const name = this.newName("s");
    const { node } = this.#handle(client);
    const outcome = await this.#attempt(
      node,
      `snapshot ${client.model.name}@${name}`,
      (runtime) => runtime.store.createSnapshot(client.model.name, name),
    );
    this.#flushed(client, outcome);
    if (outcome.ok) client.model.snapshots.set(name, client.model.allowedAll());
  }

  async #clone(model: VolumeModel): Promise<void> {
    const snapshots = [...model.snapshots.keys()];
    if (snapshots.length === 0) return;
    const snapshot = snapshots[this.sim.world.random.int(snapshots.length)];
    const name = this.newName("v");
    const from = `${model.name}@${snapshot}`;
    const tags = model.snapshots.get(snapshot)!; // a deletion of the snapshot may start meanwhile
    const outcome = await this.#attempt(
      this.randomNode(),
      `clone ${name} of ${from}`,
      (runtime) => runtime.store.createVolume({ name, snapshot: from }),
    );
    if (outcome.ok) this.#startClient(new VolumeModel(name, tags));
  }

  /** Another member writes the volume at once (not awaited): the lease moves under the client. */
  #contend(model: VolumeModel): void {
    const { first, count, tag, data } = this.#randomWrite();
    model.float(first, count, tag);
    this.#attempt(
      this.randomNode(),
      `contend ${model.name} ${first}+${count} #${tag}`,
      async (runtime) => {
        // A connection of its own, closed once the write is done.
        const closeWriter = runtime.store.noteWriter(model.name);
        try {
          await (await runtime.leases.open(model.name)).write(first * sectorBytes, data, false);
        } finally {
          closeWriter();
        }
      },
    ).then(() => {
      model.flushFailed(); // the lease moved here: the holder's release may have flushed
      model.land(tag, this.sim.world.now());
    });
  }

  async #delete(client: VolumeClient): Promise<void> {
    const { model } = client;
    const { node } = this.#handle(client);
    // Its snapshots go with it (cascade): no more reads or clones of them are checked.
    const snapshots = [...model.snapshots.keys()];
    model.snapshots.clear();
    const outcome = await this.#attempt(
      node,
      `delete ${model.name}`,
      (runtime) => runtime.store.deleteVolume(model.name, { cascade: true }),
    );
    model.state = outcome.ok ? "deleted" : "unknown";
    if (!outcome.ok) return;
    this.#catalogue.deleted("volume", model.name);
    if (!this.#withCatalogue) return;
    for (const snapshot of snapshots) {
      this.#catalogue.deleted("snapshot", `${model.name}@${snapshot}`);
    }
    this.#catalogue.collectSoon(node);
  }

  /**
   * After the faults: one collection and time to heal; then each live volume
   * is flushed and read whole from every member, and so are snapshots and
   * images, and every deletion is probed.
   */
  async finalChecks(): Promise<void> {
    if (this.#withCatalogue) {
      await this.#catalogue.finalCollect();
      await this.sim.world.run(this.sim.world.now() + finalHealMs);
    }
    for (const client of this.#clients) {
      const { model } = client;
      if (model.state !== "live" || model.busy) continue;
      await this.settle(this.#flush(client));
      for (const node of this.sim.running()) {
        if (model.state !== "live") break;
        await this.settle(this.#readWhole(model, node.id));
      }
    }
    if (this.#withCatalogue) await this.#catalogue.finalReads();
    await this.#catalogue.finalProbes();
  }

  async #readWhole(model: VolumeModel, node: string): Promise<void> {
    const into = new Uint8Array(model.sectors * sectorBytes);
    const outcome = await this.#attempt(node, `final read ${model.name}`, async (runtime) => {
      await (await runtime.leases.open(model.name)).read({ offset: 0, length: into.length }, into);
    });
    if (!outcome.ok) {
      this.violations.push(`final read of "${model.name}" at ${node} failed: ${outcome.error}`);
      return;
    }
    this.violations.push(...model.check(0, sectorTags(into, 0), `final read at ${node}`));
  }

  #randomWrite() {
    const first = this.sim.world.random.int(volumeSectors);
    const count = 1 + this.sim.world.random.int(Math.min(writeSectorsMax, volumeSectors - first));
    const tag = this.newTag();
    return { first, count, tag, data: sectorPattern(tag, first, count) };
  }

  #attempt<T>(node: string, label: string, run: Parameters<typeof attempt<T>>[3]) {
    return attempt(this, node, label, run);
  }
}
