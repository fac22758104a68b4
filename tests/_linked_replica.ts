/**
 * An ObjectReplica on a LocalEngine, served by a real link server whose
 * object calls read their bodies into pooled buffers, as a node serves them;
 * tests reach it over a link (rpcObjectLink) as a writer on another node does.
 */
import { LocalEngine, type NodeDisk } from "../core/mod.ts";
import {
  JournalDisk,
  type ObjectLink,
  objectMethods,
  objectMethodsPooled,
  ObjectReplica,
  type ObjectReplicaOptions,
  rpcObjectLink,
} from "../cluster/data/mod.ts";
import { LinkClient, MemoryIdentity } from "../cluster/transport/mod.ts";
import { key, startPort } from "./_link_proxy.ts";

/** Options of {@linkcode withLinkedReplica}. */
export interface LinkedReplicaOptions extends Omit<ObjectReplicaOptions, "journal"> {
  /** What the replica sees of its engine (a test may count its calls); the engine itself if none. */
  disk?: (engine: LocalEngine) => NodeDisk;
}

/**
 * Runs `run` with a link to a replica whose data (and journal) lives in `dir`;
 * closes the link, the server, the replica and the engine afterwards, and
 * leaves `dir` to the caller (to open again, or to remove).
 */
export async function withLinkedReplica(
  dir: string,
  options: LinkedReplicaOptions,
  run: (remote: ObjectLink) => Promise<void>,
): Promise<void> {
  const { disk, ...replicaOptions } = options;
  const engine = await LocalEngine.open({ dir });
  const replica = new ObjectReplica("n1", disk?.(engine) ?? engine, {
    ...replicaOptions,
    journal: new JournalDisk(`${dir}/journal`),
  });
  const server = startPort({ methods: objectMethods(replica), pooledData: objectMethodsPooled });
  const links = new LinkClient(key, new MemoryIdentity(), { selfId: "client" });
  try {
    await run(rpcObjectLink(links, "n1", server.address));
  } finally {
    await links.close();
    await server.stop();
    await replica.close();
    await engine.close();
  }
}
