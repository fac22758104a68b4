/**
 * The dashboard's view of every member (`GET /v1/stats` in a cluster): each
 * live member answers `node.stats` with its own figures (metrics/node_stats.ts),
 * since the per-volume I/O counters and the capacity of a member live only in
 * that member's process. A member that does not answer within
 * {@linkcode memberStatsTimeoutMs} is listed with the error, so one slow
 * member never holds the page up.
 */
import { type NodeStats, nodeStats } from "../metrics/mod.ts";
import type { RpcCaller, RpcMethod } from "../cluster/transport/mod.ts";

/** How long a member has to answer `node.stats`. */
export const memberStatsTimeoutMs = 1_000;

/** One member's figures, or why they are missing. */
export type MemberStats = { id: string } & ({ stats: NodeStats } | { error: string });

/** The method a member answers with its figures. */
export function memberStatsMethods(): Record<string, RpcMethod> {
  return {
    "node.stats": async () => ({ header: { ...await nodeStats() } }),
  };
}

/** The figures of this node and of every live member, this node first. */
export async function gatherMemberStats(
  selfId: string,
  live: readonly { id: string; address: string }[],
  rpc: RpcCaller,
): Promise<MemberStats[]> {
  const others = live.filter((member) => member.id !== selfId);
  const answers = await Promise.all(others.map(async (member): Promise<MemberStats> => {
    try {
      const reply = await rpc.call(
        member.address,
        "node.stats",
        { header: {} },
        memberStatsTimeoutMs,
      );
      return { id: member.id, stats: reply.header as unknown as NodeStats };
    } catch (error) {
      return { id: member.id, error: error instanceof Error ? error.message : String(error) };
    }
  }));
  return [{ id: selfId, stats: await nodeStats() }, ...answers];
}
