/**
 * How the cluster engine reaches other members besides its replicated data:
 * links to their object replicas (one per member and address, kept), whether
 * a block is held anywhere, a block deleted everywhere, and the blocks and
 * objects every live member lists.
 */
import { type ObjectLink, rpcObjectLink } from "./data/mod.ts";
import type { BlockPeer } from "./data/mod.ts";
import type { NodeDisk } from "../core/mod.ts";
import type { MemberState } from "./membership/mod.ts";
import type { RpcCaller } from "./transport/mod.ts";

/** What {@linkcode MemberCalls} needs of its engine. */
export interface MemberCallsOptions {
  selfId: string;
  rpc: RpcCaller;
  /** This node's own object replica. */
  replica: ObjectLink;
  /** This node's own disk. */
  local: NodeDisk;
  /** Members known alive now. */
  liveMembers: () => MemberState[];
  /** The replicas of `name`, most preferred first. */
  replicaPeers: (name: string) => BlockPeer[];
}

/** The calls of one engine to other members; see the module doc. */
export class MemberCalls {
  #options: MemberCallsOptions;
  #objectLinks = new Map<string, ObjectLink>();

  constructor(options: MemberCallsOptions) {
    this.#options = options;
  }

  /** The link to the object replica of `peer` (this node's own replica for itself). */
  objectLink(peer: BlockPeer): ObjectLink {
    if (peer.id === this.#options.selfId) return this.#options.replica;
    let link = this.#objectLinks.get(`${peer.id} ${peer.address}`);
    if (link === undefined) {
      link = rpcObjectLink(this.#options.rpc, peer.id, peer.address);
      this.#objectLinks.set(`${peer.id} ${peer.address}`, link);
    }
    return link;
  }

  /** True when this node or one of the replicas of `hash` holds the block. */
  async hasBlock(hash: string): Promise<boolean> {
    if (await this.#options.local.hasBlock(hash)) return true;
    const answers = await Promise.allSettled(
      this.#options.replicaPeers(hash).filter((peer) => peer.id !== this.#options.selfId).map(
        async (peer) => {
          const reply = await this.#options.rpc.call(peer.address, "block.has", {
            header: { hashes: [hash] },
          });
          return (reply.header.have as boolean[])[0] === true;
        },
      ),
    );
    return answers.some((answer) => answer.status === "fulfilled" && answer.value);
  }

  /** Deletes block `hash` here and on every live member (garbage collection). */
  async deleteBlock(hash: string): Promise<void> {
    await this.#options.local.deleteBlock(hash);
    await this.#everyLiveMember("block.delete", { hashes: [hash] });
  }

  /** The blocks every live member lists, sorted (see #union). */
  listBlocks(): Promise<string[]> {
    return this.#union("block.list", "hashes", () => this.#options.local.listBlocks());
  }

  /** The objects every live member lists, sorted (see #union). */
  listObjects(): Promise<string[]> {
    return this.#union("object.list", "names", () => this.#options.local.listObjects());
  }

  /** Calls `method` on every live member but this node; failures are ignored. */
  async #everyLiveMember(method: string, header: Record<string, unknown>): Promise<void> {
    await Promise.allSettled(
      this.#options.liveMembers().filter((member) => member.id !== this.#options.selfId).map((
        member,
      ) => this.#options.rpc.call(member.address, method, { header })),
    );
  }

  /**
   * The sorted union of a list every live member answers (this node's from
   * `local`). A member that does not answer is left out: a block or object
   * missing from the list is only kept longer by garbage collection.
   */
  async #union(
    method: string,
    field: string,
    local: () => AsyncIterable<string>,
  ): Promise<string[]> {
    const lists = await Promise.allSettled(
      this.#options.liveMembers().map(async (member) => {
        if (member.id === this.#options.selfId) return await Array.fromAsync(local());
        const reply = await this.#options.rpc.call(member.address, method, { header: {} });
        const list = reply.header[field];
        if (!Array.isArray(list)) throw new TypeError(`${method}: malformed reply`);
        return list.map(String);
      }),
    );
    const union = new Set<string>();
    for (const list of lists) {
      if (list.status === "fulfilled") { for (const item of list.value) union.add(item); }
    }
    return [...union].sort();
  }
}
