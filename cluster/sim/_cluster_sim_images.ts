/**
 * The image clients of the whole-cluster simulation. They upload small images
 * through random members (`Store.uploadImage`, what `PUT /v1/images/NAME`
 * runs: ingest cuts the bytes into blocks, puts them to their replicas, then
 * commits the record), with pauses between chunks so that collections run
 * while uploads are under way; they read images back, clone volumes from them
 * (the clone's client then checks it against the image's bytes) and delete
 * them. Each block of an image is zeros or the pattern of one tag
 * (`_cluster_sim_model.ts`), and a block often repeats one of another image
 * at the same place, so uploads deduplicate against live and deleted images.
 *
 * Rule (e): an acknowledged upload reads back byte-exact, from any member,
 * until its deletion starts (a read during the faults may fail, never return
 * other bytes), and whole from every member once the cluster healed; an
 * upload that failed may exist, and then reads the same.
 *
 * @module
 */
import { NotFoundError } from "../../core/mod.ts";
import {
  checkSectors,
  sectorBytes,
  sectorPattern,
  sectorTags,
  volumeBlocks,
  VolumeModel,
  volumeSectors,
  zeroTag,
} from "./_cluster_sim_model.ts";
import { attempt, type MetaClients } from "./_cluster_sim_meta.ts";
import { simBlockSize } from "./_cluster_sim_node.ts";

/** Bytes of one chunk of an upload's body (not a multiple of the block size). */
const chunkBytes = 6 * sectorBytes;
/** Longest pause between two chunks of an upload's body. */
const chunkPauseMsMax = 400;
/** Images uploaded, live or whose upload failed, at most at once. */
const imagesMax = 5;
/** Sectors of one block. */
const blockSectors = simBlockSize / sectorBytes;

/** An image as its clients know it. */
interface ImageModel {
  name: string;
  /** The tag of every sector. */
  tags: number[];
  /**
   * "live": its upload was acknowledged; "maybe": its upload failed (it may
   * exist, whole); "gone": its deletion started (no more checks).
   */
  state: "uploading" | "live" | "maybe" | "gone";
}

/** What the image clients need from the rest of the workload. */
export interface ImageHooks {
  /** Starts the client of a volume just created (a clone). */
  startVolume(model: VolumeModel): void;
  /** Member `node` changed the catalogue: collect garbage there soon, as its store would. */
  collectSoon(node: string): void;
  /** Image `name` was deleted: it must never open again. */
  deleted(name: string): void;
}

/** The image clients; see the module doc. */
export class ImageClients {
  #clients: MetaClients;
  #hooks: ImageHooks;
  #images: ImageModel[] = [];
  /** The tags blocks held so far, at each block index: new images reuse some. */
  #blockTags: number[][] = Array.from({ length: volumeBlocks }, () => []);

  constructor(clients: MetaClients, hooks: ImageHooks) {
    this.#clients = clients;
    this.#hooks = hooks;
  }

  /** Uploads a new image through a random member, unless there are enough. */
  async upload(): Promise<void> {
    const count = this.#images.filter((image) => image.state !== "gone").length;
    if (count >= imagesMax) return;
    const image: ImageModel = {
      name: this.#clients.newName("i"),
      tags: this.#newContent(),
      state: "uploading",
    };
    this.#images.push(image);
    const node = this.#clients.randomNode();
    const bytes = imageBytes(image.tags);
    const outcome = await attempt(this.#clients, node, `upload ${image.name}`, (runtime) => {
      const body = this.#body(node, runtime.incarnation, bytes);
      return runtime.store.uploadImage(image.name, body, { expectedBytes: bytes.length });
    });
    image.state = outcome.ok ? "live" : "maybe";
    this.#hooks.collectSoon(node); // the store collects after every upload, whatever its end
  }

  /** Reads a random range of a random image through a random member. */
  async read(): Promise<void> {
    const image = this.#pick(["live", "maybe"]);
    if (image === undefined) return;
    const first = this.#clients.sim.world.random.int(volumeSectors);
    const count = 1 + this.#clients.sim.world.random.int(volumeSectors - first);
    await this.#readCheck(image, this.#clients.randomNode(), { first, count }, "read");
  }

  /** Clones a volume from a random live image through a random member. */
  async clone(): Promise<void> {
    const image = this.#pick(["live"]);
    if (image === undefined) return;
    const name = this.#clients.newName("v");
    const outcome = await attempt(
      this.#clients,
      this.#clients.randomNode(),
      `image-clone ${name} of ${image.name}`,
      (runtime) => runtime.store.createVolume({ name, image: image.name }),
    );
    if (!outcome.ok) return;
    this.#hooks.startVolume(new VolumeModel(name, image.tags.map((tag) => new Set([tag]))));
  }

  /** Deletes a random image (live, or whose upload failed) through a random member. */
  async delete(): Promise<void> {
    const image = this.#pick(["live", "maybe"]);
    if (image === undefined) return;
    const uploaded = image.state === "live";
    image.state = "gone";
    const node = this.#clients.randomNode();
    const outcome = await attempt(
      this.#clients,
      node,
      `image-delete ${image.name}`,
      (runtime) => runtime.store.deleteImage(image.name),
    );
    if (!outcome.ok) return;
    if (uploaded) this.#hooks.deleted(image.name);
    this.#hooks.collectSoon(node);
  }

  /**
   * After the faults: every acknowledged image reads whole from every member;
   * one whose upload failed reads whole or is absent.
   */
  async finalChecks(): Promise<void> {
    for (const image of this.#images) {
      if (image.state !== "live" && image.state !== "maybe") continue;
      for (const node of this.#clients.sim.running()) {
        const read = this.#readCheck(image, node.id, { first: 0, count: volumeSectors }, "final");
        await this.#clients.settle(read);
      }
    }
  }

  /** Reads sectors of `image` through `node` and checks them; "final": a failure is a violation. */
  async #readCheck(
    image: ImageModel,
    node: string,
    sectors: { first: number; count: number },
    what: "read" | "final",
  ): Promise<void> {
    const into = new Uint8Array(sectors.count * sectorBytes);
    let absent = false;
    const label = `${what === "final" ? "final image-read" : "image-read"} ${image.name} ` +
      `${sectors.first}+${sectors.count}`;
    const outcome = await attempt(this.#clients, node, label, async (runtime) => {
      try {
        const view = await runtime.store.openImage(image.name);
        await view.readAt({ offset: sectors.first * sectorBytes, length: into.length }, into);
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error;
        absent = true;
      }
    });
    if (image.state !== "live" && image.state !== "maybe") return; // a deletion started
    if (absent && image.state === "live") {
      this.#clients.violations.push(`${label} at ${node}: no such image (its upload succeeded)`);
    }
    if (!outcome.ok) {
      if (what === "final") {
        this.#clients.violations.push(
          `final read of image "${image.name}" at ${node} failed: ${outcome.error}`,
        );
      }
      return;
    }
    if (absent) return;
    const tags = sectorTags(into, sectors.first);
    this.#clients.log.push(`  read ${tags.join(",")}`);
    this.#clients.violations.push(
      ...checkSectors(
        `${what} read of image "${image.name}" at ${node}:`,
        sectors.first,
        tags,
        (s) => new Set([image.tags[s]]),
      ),
    );
  }

  /** The tag of each sector of a new image: per block, zeros, a block seen before, or new. */
  #newContent(): number[] {
    const tags: number[] = [];
    for (let block = 0; block < volumeBlocks; block++) {
      const seen = this.#blockTags[block];
      const roll = this.#clients.random();
      let tag: number;
      if (roll < 0.2) tag = zeroTag;
      else if (roll < 0.6 && seen.length > 0) {
        tag = seen[this.#clients.sim.world.random.int(seen.length)];
      } else seen.push(tag = this.#clients.newTag());
      for (let s = 0; s < blockSectors; s++) tags.push(tag);
    }
    return tags;
  }

  /** The body of an upload: chunks with pauses between them, while its member runs. */
  async *#body(node: string, incarnation: number, bytes: Uint8Array): AsyncIterable<Uint8Array> {
    const world = this.#clients.sim.world;
    for (let at = 0; at < bytes.length; at += chunkBytes) {
      if (at > 0) await world.sleep(node, incarnation, world.random.next() * chunkPauseMsMax);
      yield bytes.subarray(at, at + chunkBytes);
    }
  }

  #pick(states: ImageModel["state"][]): ImageModel | undefined {
    const images = this.#images.filter((image) => states.includes(image.state));
    return images.length === 0
      ? undefined
      : images[this.#clients.sim.world.random.int(images.length)];
  }
}

/** The bytes of an image whose sectors hold `tags` (zeros for the zero tag). */
function imageBytes(tags: number[]): Uint8Array {
  const bytes = new Uint8Array(tags.length * sectorBytes);
  tags.forEach((tag, s) => {
    if (tag !== zeroTag) bytes.set(sectorPattern(tag, s, 1), s * sectorBytes);
  });
  return bytes;
}
