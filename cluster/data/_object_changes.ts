/**
 * A change of an object (a write or a deletion) on its replicas, from the
 * writer: stamped with the writer's lease epoch and the object's next
 * version, sent to the replicas that hold its latest version once a write
 * quorum of them does (lagging ones brought up first), this node's own copy
 * last; a refusal for an older epoch is a lost lease (fences.ts).
 */
import { LeaseLostError } from "../../core/mod.ts";
import { parseObjectName } from "../../core/block_map.ts";
import { isFenced } from "./fences.ts";
import { type ObjectChange, placementDigest, type Stamp } from "./object_link.ts";
import type { WrittenObjects } from "./_written_objects.ts";
import type { Unflushed } from "./_unflushed.ts";
import { ReplicaQuorumError } from "./_replica_copies.ts";
import type { ObjectCounters, ReplicatedObjectsOptions } from "./replicated_objects.ts";

/** The writer's state a change works on, shared with its ReplicatedObjects. */
export interface ObjectChangeParts {
  options: ReplicatedObjectsOptions;
  counters: ObjectCounters;
  writers: WrittenObjects;
  unflushed: Unflushed;
}

/**
 * Sends one change of object `name` to its current replicas (ReplicatedObjects
 * writes and deletes through this; see its module doc): the stamps the object
 * went from and to. `instanceEpoch`: the lease epoch of the volume instance
 * writing (Engine.writeObject), refused unless it is the one held now.
 */
export async function changeReplicas(
  parts: ObjectChangeParts,
  name: string,
  body: Pick<ObjectChange, "offset" | "data" | "truncate" | "remove">,
  existing: boolean,
  instanceEpoch?: number,
): Promise<{ before: Stamp; after: Stamp }> {
  const epoch = parts.options.epochOf(parseObjectName(name).uid);
  if (epoch === 0) {
    throw new LeaseLostError(
      `Cannot write object ${name}: this node holds no lease on its volume`,
    );
  }
  if (instanceEpoch !== undefined && instanceEpoch !== epoch) {
    // An instance dropped when the lease moved away, still writing after this node
    // took the lease again (seed 10123464 with joins, leaves and replacements): its
    // map is not the volume's any more (a snapshot since may have frozen this very
    // object), and stamped with the new epoch its change would pass every fence.
    throw new LeaseLostError(
      `Cannot write object ${name}: written by the volume as it was under lease epoch ` +
        `${instanceEpoch}, and this node holds epoch ${epoch} now`,
    );
  }
  const links = parts.options.replicasOf(name);
  const quorum = parts.writers.quorumOf(links);
  const written = await parts.writers.stateOf(name, links, quorum, existing);
  // Fewer current replicas than the quorum (one came back from the dead, or
  // missed changes): bring them up first, or fail before sending a change.
  const currentCount = () => links.filter((link) => written.current.has(link.id)).length;
  if (currentCount() < quorum) await parts.writers.bringUp(name, written, links, false);
  if (currentCount() < quorum) {
    written.stale = true; // learn the replicas' state again on the next write
    throw new ReplicaQuorumError(
      `Cannot write object ${name}: ${currentCount()} of ${links.length} replicas ` +
        `are current, ${quorum} needed`,
    );
  }
  const before = written.stamp;
  const change: ObjectChange = {
    ...body,
    epoch,
    version: written.stamp[1] + 1,
    placement: placementDigest(links.map((link) => link.id)),
  };
  const targets = links.filter((link) => written.current.has(link.id));
  const self = targets.find((link) => link.id === parts.options.selfId);
  const remotes = targets.filter((link) => link !== self);
  const replies = await Promise.allSettled(remotes.map((link) => link.change(name, change)));
  const current = new Set<string>();
  let fenced: Error | null = null;
  let moved = false;
  replies.forEach((reply, i) => {
    if (reply.status === "fulfilled" && reply.value.moved === true) moved = true;
    if (reply.status === "fulfilled" && reply.value.applied) {
      current.add(remotes[i].id);
      parts.unflushed.note(remotes[i], name);
    } else if (reply.status === "rejected" && isFenced(reply.reason)) {
      fenced = new LeaseLostError(String(reply.reason.message), { cause: reply.reason });
    }
  });
  // This node's own copy changes only once the others make a quorum with it, so
  // a holder cut off from the cluster cannot change even its own copy (unless
  // it sees the other replicas dead and the quorum is its copy alone).
  if (fenced === null && self !== undefined && current.size + 1 >= quorum) {
    const reply = await self.change(name, change);
    if (reply.applied) {
      current.add(self.id);
      parts.unflushed.note(self, name);
    }
  }
  parts.counters.writes++;
  parts.counters.laggards += targets.length - current.size;
  written.stamp = [change.epoch, change.version];
  // A member off the placement held the version before this change (a join moved
  // the object; this node had written it there): its copy stays behind (seed
  // 1201668 with joins and leaves: both replicas of the new placement stopped, and
  // a snapshot read took the copy left on the old one).
  // A replica that places the object elsewhere (it knows of a join or a leave this node
  // does not, or the other way): the members it places it on may hold older copies only,
  // and a holder after this one, placing it as that replica does, may find nothing newer
  // there while this node's replicas are away. The flush that makes this change durable
  // raises the object's floor, which such a holder checks (seed 3408302 with joins and
  // leaves: at R=2 a member healing the object onto a member that had just joined copied
  // it at the writer's version 4; the writer, which had not heard of the join, went on to
  // version 8 on its own placement and flushed it there with no floor; both its replicas
  // crashed, and the next holder took version 4 from the new member and wrote over it).
  if ([...written.current].some((id) => !links.some((link) => link.id === id)) || moved) {
    written.leftBehind = written.stamp;
  }
  written.current = current;
  if (fenced !== null) {
    parts.writers.delete(name);
    throw fenced;
  }
  if (current.size < quorum) await parts.writers.bringUp(name, written, links, false);
  if (written.current.size < quorum) {
    written.stale = true; // learn the replicas' state again on the next write
    throw new ReplicaQuorumError(
      `Cannot write object ${name}: ${written.current.size} of ${links.length} replicas ` +
        `took it, ${quorum} needed`,
    );
  }
  written.acked = written.stamp;
  return { before, after: written.stamp };
}
