/**
 * The catalogue clients of the whole-cluster simulation, beside the volumes'
 * own: every 0.2–1 s, through a random member, one uploads, reads, clones
 * from or deletes an image (`_cluster_sim_images.ts`), deletes or reads a
 * snapshot, collects garbage (what `POST /v1/gc` runs), or probes something
 * deleted. Garbage is also collected where the store's own timer would: on
 * the member that deleted something or ended an upload, a second later,
 * unless that member crashed meanwhile (its timer died with it).
 *
 * Rules: (f) a snapshot reads what its volume held when it was taken, until
 * its deletion starts, and whole from every member once the cluster healed;
 * (c) a deleted volume, snapshot or image never opens again, from any member.
 * Collections are checked by every read of volumes, clones, snapshots and
 * images: a block or object collected while something live referenced it
 * reads as zeros or fails.
 *
 * @module
 */
import { NotFoundError } from "../../core/mod.ts";
import { checkSectors, sectorBytes, sectorTags, type VolumeModel } from "./_cluster_sim_model.ts";
import { attempt, type MetaClients } from "./_cluster_sim_meta.ts";
import { ImageClients } from "./_cluster_sim_images.ts";
import type { ClusterRuntime } from "./_cluster_sim_node.ts";

/** The store's delay between a deletion or an upload and its collection (`gcDelayMs`). */
const collectDelayMs = 1_000;

/** Something deleted, and how to try opening it. */
interface Deleted {
  label: string;
  open(runtime: ClusterRuntime): Promise<unknown>;
}

/** The catalogue clients; see the module doc. */
export class CatalogueClients {
  readonly images: ImageClients;
  #clients: MetaClients;
  #volumes: () => VolumeModel[];
  #deleted: Deleted[] = [];
  /** Incarnations (`member#incarnation`) whose collection after a change is pending. */
  #collecting = new Set<string>();

  constructor(
    clients: MetaClients,
    hooks: { volumes(): VolumeModel[]; startVolume(model: VolumeModel): void },
  ) {
    this.#clients = clients;
    this.#volumes = hooks.volumes;
    this.images = new ImageClients(clients, {
      startVolume: hooks.startVolume,
      collectSoon: (node) => this.collectSoon(node),
      deleted: (name) => this.deleted("image", name),
    });
  }

  /** Starts the clients; they stop starting operations at `untilMs`. */
  start(untilMs: number): void {
    const world = this.#clients.sim.world;
    const next = () => {
      if (world.now() >= untilMs) return;
      this.#operate();
      world.at(200 + this.#clients.random() * 800, next);
    };
    world.at(this.#clients.random() * 1000, next);
  }

  /** One operation, not awaited: they overlap each other and the volumes' clients. */
  #operate(): void {
    const roll = this.#clients.random();
    if (roll < 0.22) this.images.upload();
    else if (roll < 0.38) this.images.read();
    else if (roll < 0.48) this.images.clone();
    else if (roll < 0.56) this.images.delete();
    else if (roll < 0.64) this.#deleteSnapshot();
    else if (roll < 0.76) this.#readSnapshot();
    else if (roll < 0.88) this.#collect(this.#clients.randomNode(), "gc asked");
    else this.probeDeleted(this.#clients.randomNode());
  }

  /** Member `node` deleted something or ended an upload: its store collects a second later. */
  collectSoon(node: string): void {
    const runtime = this.#clients.sim.runtimeOf(node);
    if (runtime === null) return;
    const key = `${node}#${runtime.incarnation}`;
    if (this.#collecting.has(key)) return; // one is pending there already
    this.#collecting.add(key);
    this.#clients.sim.world.at(collectDelayMs, () => {
      this.#collecting.delete(key);
      if (this.#clients.sim.runtimeOf(node)?.incarnation !== runtime.incarnation) return;
      this.#collect(node, "gc after a change");
    });
  }

  /** Volume, snapshot (`VOLUME@SNAPSHOT`) or image `name` was deleted: it never opens again. */
  deleted(kind: "volume" | "snapshot" | "image", name: string): void {
    const open = kind === "volume"
      ? (runtime: ClusterRuntime) => runtime.leases.open(name)
      : kind === "image"
      ? (runtime: ClusterRuntime) => runtime.store.openImage(name)
      : (runtime: ClusterRuntime) => runtime.store.openSnapshot(...splitRef(name));
    this.#deleted.push({ label: `${kind} ${name}`, open });
  }

  /** After the faults: one collection, through a random member. */
  async finalCollect(): Promise<void> {
    await this.#clients.settle(this.#collect(this.#clients.randomNode(), "final gc"));
  }

  /** After the faults: snapshots and images read whole from every member. */
  async finalReads(): Promise<void> {
    for (const model of this.#volumes()) {
      for (const snapshot of model.snapshots.keys()) {
        for (const node of this.#clients.sim.running()) {
          await this.#clients.settle(this.#readSnapshotAt(model, snapshot, node.id, true));
        }
      }
    }
    await this.images.finalChecks();
  }

  /** After the faults: every deletion probed through every member. */
  async finalProbes(): Promise<void> {
    for (const node of this.#clients.sim.running()) {
      for (const deleted of this.#deleted) {
        await this.#clients.settle(this.#probe(deleted, node.id));
      }
    }
  }

  async #collect(node: string, label: string): Promise<void> {
    const outcomes = this.#clients.outcomes;
    await attempt(this.#clients, node, label, async (runtime) => {
      const result = await runtime.store.collectGarbage();
      outcomes["gc blocks deleted"] = (outcomes["gc blocks deleted"] ?? 0) + result.deletedBlocks;
      outcomes["gc objects deleted"] = (outcomes["gc objects deleted"] ?? 0) +
        result.deletedObjects;
      this.#clients.sim.note(`${node} collected ${JSON.stringify(result)}`);
    });
  }

  async #deleteSnapshot(): Promise<void> {
    const picked = this.#pickSnapshot();
    if (picked === undefined) return;
    const { model, snapshot } = picked;
    model.snapshots.delete(snapshot); // no more reads or clones of it are checked
    const node = this.#clients.randomNode();
    const outcome = await attempt(
      this.#clients,
      node,
      `snapshot-delete ${model.name}@${snapshot}`,
      (runtime) => runtime.store.deleteSnapshot(model.name, snapshot),
    );
    if (!outcome.ok) return;
    this.deleted("snapshot", `${model.name}@${snapshot}`);
    this.collectSoon(node);
  }

  async #readSnapshot(): Promise<void> {
    const picked = this.#pickSnapshot();
    if (picked === undefined) return;
    await this.#readSnapshotAt(picked.model, picked.snapshot, this.#clients.randomNode(), false);
  }

  /** Reads snapshot `snapshot` of `model` through `node` (whole when `final`) and checks it. */
  async #readSnapshotAt(
    model: VolumeModel,
    snapshot: string,
    node: string,
    final: boolean,
  ): Promise<void> {
    const allowed = model.snapshots.get(snapshot)!;
    const random = this.#clients.sim.world.random;
    const first = final ? 0 : random.int(allowed.length);
    const count = final ? allowed.length : 1 + random.int(allowed.length - first);
    const into = new Uint8Array(count * sectorBytes);
    const label = `${final ? "final snapshot-read" : "snapshot-read"} ${model.name}@${snapshot} ` +
      `${first}+${count}`;
    const outcome = await attempt(this.#clients, node, label, async (runtime) => {
      const view = await runtime.store.openSnapshot(model.name, snapshot);
      await view.readAt({ offset: first * sectorBytes, length: into.length }, into);
    });
    // A deletion of the snapshot (or of its volume) started meanwhile: nothing to check.
    if (model.snapshots.get(snapshot) !== allowed) return;
    if (!outcome.ok) {
      if (final || outcome.error.startsWith("NotFoundError")) {
        this.#clients.violations.push(`${label} at ${node} failed: ${outcome.error}`);
      }
      return;
    }
    const tags = sectorTags(into, first);
    this.#clients.log.push(`  read ${tags.join(",")}`);
    this.#clients.violations.push(
      ...checkSectors(`${label} at ${node}:`, first, tags, (s) => allowed[s]),
    );
  }

  #pickSnapshot(): { model: VolumeModel; snapshot: string } | undefined {
    const random = this.#clients.sim.world.random;
    const models = this.#volumes().filter((model) => model.snapshots.size > 0);
    if (models.length === 0) return undefined;
    const model = models[random.int(models.length)];
    const snapshots = [...model.snapshots.keys()];
    return { model, snapshot: snapshots[random.int(snapshots.length)] };
  }

  /** Tries to open something deleted through `node` (rule (c)). */
  async probeDeleted(node: string): Promise<void> {
    if (this.#deleted.length === 0) return;
    await this.#probe(
      this.#deleted[this.#clients.sim.world.random.int(this.#deleted.length)],
      node,
    );
  }

  /** Rule (c): opening something deleted fails with NotFoundError. */
  async #probe(deleted: Deleted, node: string): Promise<void> {
    await attempt(this.#clients, node, `open deleted ${deleted.label}`, async (runtime) => {
      try {
        await deleted.open(runtime);
      } catch (error) {
        if (error instanceof NotFoundError) return;
        throw error;
      }
      this.#clients.violations.push(`deleted ${deleted.label} opened again at ${node}`);
    });
  }
}

/** `VOLUME@SNAPSHOT` as its two names. */
function splitRef(ref: string): [string, string] {
  const at = ref.indexOf("@");
  return [ref.slice(0, at), ref.slice(at + 1)];
}
