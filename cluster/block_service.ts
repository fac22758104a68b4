/**
 * Content blocks across the cluster. Blocks are immutable and named by their
 * SHA-256, so any copy with the right hash is right: every block that crosses
 * the network is verified against its name, on both ends; a bad or missing copy
 * is repaired from a good one when a read finds it.
 *
 * Writes go to the R replicas that placement names and succeed once a write
 * quorum holds the block durably: a majority of R, lowered to R - floor(R/2)
 * by replicas known dead (_write_quorum.ts).
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import type { LocalEngine } from "../core/mod.ts";
import { blockSizeMax, CorruptionError, isBlockName } from "../core/mod.ts";
import type { RpcClient, RpcMethod } from "./rpc.ts";
import { writeQuorumOf } from "./_write_quorum.ts";

/** Healing never fills a disk: a node takes copies only while this much stays free. */
export const healDiskReserveBytes = 1024 ** 3;

/** Free bytes on the file system holding `dir`. */
export function freeBytes(dir: string): number {
  const stats = fs.statfsSync(dir);
  return stats.bavail * stats.bsize;
}

/** A member as the block service needs it. */
export interface BlockPeer {
  id: string;
  address: string;
}

/** Where the replicas of a name are, most preferred first, this node included if chosen. */
export type ReplicaPicker = (name: string) => BlockPeer[];

/** SHA-256 hex of bytes (native: 4 MiB in ~3 ms). */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The methods a node serves for the block service, over its local engine. */
export function blockMethods(engine: LocalEngine): Record<string, RpcMethod> {
  return {
    "block.has": async (request) => {
      const hashes = request.header.hashes;
      if (!Array.isArray(hashes) || hashes.length > 4096) throw new TypeError("bad hashes");
      const have = await Promise.all(hashes.map((hash) => engine.hasBlock(String(hash))));
      return { header: { have } };
    },
    "block.put": async (request) => {
      const hash = String(request.header.hash);
      const data = request.data ?? new Uint8Array();
      if (sha256Hex(data) !== hash) {
        throw new CorruptionError(`Cannot store block ${hash}: its bytes do not match its name`);
      }
      if (
        request.header.heal === true && freeBytes(engine.dir) - data.length < healDiskReserveBytes
      ) {
        throw new RangeError(
          `Cannot take block ${hash} for healing: less than ${healDiskReserveBytes} bytes free`,
        );
      }
      // A repair replaces a copy found bad (the new bytes were just verified).
      if (request.header.repair === true) await engine.deleteBlock(hash);
      const stored = await engine.putBlock(hash, data);
      await engine.flush();
      return { header: { stored } };
    },
    "block.get": async (request) => {
      const hash = String(request.header.hash);
      if (!isBlockName(hash) || !(await engine.hasBlock(hash))) {
        return { header: { found: false } };
      }
      return { header: { found: true }, data: await readWhole(engine, hash) };
    },
    "block.list": async () => {
      const hashes: string[] = [];
      for await (const hash of engine.listBlocks()) hashes.push(hash);
      return { header: { hashes } };
    },
    "block.delete": async (request) => {
      const hashes = request.header.hashes;
      if (!Array.isArray(hashes) || hashes.length > 4096) throw new TypeError("bad hashes");
      for (const hash of hashes) {
        if (isBlockName(String(hash))) await engine.deleteBlock(String(hash));
      }
      return { header: {} };
    },
  };
}

/** Reads and writes blocks on their replicas; the local engine keeps this node's copies. */
export class ReplicatedBlocks {
  readonly selfId: string;
  #engine: LocalEngine;
  #rpc: RpcClient;
  #replicasOf: ReplicaPicker;
  #isDead: (id: string) => boolean;
  /** Puts that reached fewer than all replicas: name → peers that missed it (for handoff). */
  readonly hints = new Map<string, Set<string>>();
  readonly counters = { puts: 0, fetched: 0, repaired: 0 };
  #fetching = new Map<string, Promise<Uint8Array>>();
  #putting = new Map<string, Promise<boolean>>();

  constructor(
    options: {
      selfId: string;
      engine: LocalEngine;
      rpc: RpcClient;
      replicasOf: ReplicaPicker;
      /** True when gossip declares the member dead (lowers the write quorum); none by default. */
      isDead?: (id: string) => boolean;
    },
  ) {
    this.selfId = options.selfId;
    this.#engine = options.engine;
    this.#rpc = options.rpc;
    this.#replicasOf = options.replicasOf;
    this.#isDead = options.isDead ?? (() => false);
  }

  /**
   * Stores a block on its replicas; resolves once a write quorum holds it
   * durably (a majority, or fewer when replicas are dead: _write_quorum.ts).
   * Returns whether any replica stored it for the first time.
   */
  async put(hash: string, data: Uint8Array): Promise<boolean> {
    // Concurrent puts of one block from this node: the first stores, the others wait.
    const putting = this.#putting.get(hash);
    if (putting !== undefined) return await putting.then(() => false);
    const put = this.#put(hash, data).finally(() => this.#putting.delete(hash));
    this.#putting.set(hash, put);
    return await put;
  }

  async #put(hash: string, data: Uint8Array): Promise<boolean> {
    this.counters.puts++;
    const replicas = this.#replicasOf(hash);
    const quorum = writeQuorumOf(replicas.map((peer) => peer.id), this.#isDead);
    const results = await Promise.allSettled(replicas.map(async (peer) => {
      if (peer.id === this.selfId) {
        const stored = await this.#engine.putBlock(hash, data);
        await this.#engine.flush();
        return stored;
      }
      const reply = await this.#rpc.call(peer.address, "block.put", { header: { hash }, data });
      return reply.header.stored === true;
    }));
    const missed = replicas.filter((_, i) => results[i].status === "rejected");
    if (missed.length > 0) this.hints.set(hash, new Set(missed.map((peer) => peer.id)));
    const succeeded = results.filter((result) => result.status === "fulfilled");
    if (succeeded.length < quorum) {
      throw new Error(
        `Cannot store block ${hash}: ${succeeded.length} of ${replicas.length} replicas took it, ` +
          `${quorum} needed`,
      );
    }
    return succeeded.some((result) => (result as PromiseFulfilledResult<boolean>).value);
  }

  /**
   * Reads `range` of a block: from the local copy when there is one, else the
   * whole block from the replicas in order, verified, kept as a local copy, and
   * repairing replicas found bad or missing on the way.
   */
  async read(hash: string, range: { offset: number; length: number }, into: Uint8Array) {
    if (!(await this.#engine.hasBlock(hash))) {
      let fetching = this.#fetching.get(hash);
      if (fetching === undefined) {
        fetching = this.#fetch(hash).finally(() => this.#fetching.delete(hash));
        this.#fetching.set(hash, fetching);
      }
      const data = await fetching;
      if (range.offset + range.length > data.length) {
        throw new RangeError(`Cannot read block ${hash}: range past its ${data.length} bytes`);
      }
      return into.set(data.subarray(range.offset, range.offset + range.length));
    }
    await this.#engine.readBlock(hash, range, into);
  }

  async #fetch(hash: string): Promise<Uint8Array> {
    const damaged: BlockPeer[] = [];
    for (const peer of this.#replicasOf(hash).filter((peer) => peer.id !== this.selfId)) {
      let data: Uint8Array | undefined;
      try {
        const reply = await this.#rpc.call(peer.address, "block.get", { header: { hash } });
        if (reply.header.found === true) data = reply.data;
      } catch {
        continue; // unreachable: try the next replica
      }
      if (data === undefined || sha256Hex(data) !== hash) {
        damaged.push(peer);
        continue;
      }
      this.counters.fetched++;
      // A local copy (a cache: healing hands it back when this node is no replica),
      // made durable at once: other members count it as a copy when this node is one
      // of the block's replicas.
      await this.#engine.putBlock(hash, data);
      await this.#engine.flush();
      for (const bad of damaged) {
        this.counters.repaired++;
        this.#rpc.call(bad.address, "block.put", { header: { hash, repair: true }, data })
          .catch(() => {});
      }
      return data;
    }
    throw new CorruptionError(`Cannot read block ${hash}: no replica holds a good copy`);
  }
}

/** The whole of a stored block (its length is its file's). */
export async function readWhole(engine: LocalEngine, hash: string): Promise<Uint8Array> {
  const size = await engine.blockSize(hash);
  if (size > blockSizeMax) throw new RangeError(`block ${hash} is larger than ${blockSizeMax}`);
  const data = new Uint8Array(size);
  await engine.readBlock(hash, { offset: 0, length: size }, data);
  return data;
}
