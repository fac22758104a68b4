/**
 * Full-state push-pull: the periodic exchange with a random member that repairs whatever
 * gossip missed, the retries of dead members that merge a healed partition back, and the
 * join through seeds (a push-pull with each, retried until one answers).
 *
 * @module
 */

import { type MembershipConfig, pushPullIntervalFor } from "./_membership_config.ts";
import type { Member, MemberTable } from "./_member_table.ts";
import type { MemberDigest, PushPullMessage } from "./messages.ts";
import type { MembershipEnv, TimerHandle } from "./_membership_env.ts";

/** What push-pull needs from its membership. */
export interface PushPullHost {
  readonly config: MembershipConfig;
  readonly env: MembershipEnv;
  readonly table: MemberTable;
  readonly selfId: string;
  /** True while membership runs (not before start, nor once leaving). */
  running(): boolean;
  after(delayMs: number, fn: () => void): TimerHandle;
  /** Up to `count` distinct random peers that `accept` takes. */
  randomPeers(count: number, accept: (member: Member) => boolean): Member[];
}

/** The push-pulls and the join of one membership; see the module documentation. */
export class PushPull {
  readonly #host: PushPullHost;
  #joined = true;

  constructor(host: PushPullHost) {
    this.#host = host;
  }

  /** Schedules the first push-pull at a random phase. */
  start(): void {
    const phase = this.#host.env.random();
    this.#host.after(
      phase * this.#host.config.pushPullIntervalMs,
      () => this.#firstPushPull(phase),
    );
  }

  /** Joins through `seeds`: a push-pull with each, retried until one answers. */
  join(seeds: string[]): void {
    this.#joined = false;
    this.#join(seeds, this.#host.config.joinRetryMs);
  }

  receive(m: PushPullMessage): void {
    // A join's answer is the cluster's own state: gossiping it again would tell everyone
    // what they know. Anything else we learn from a push-pull, gossip missed: spread it.
    const rebroadcast = m.phase === "request" || !m.join;
    for (const digest of m.members) this.#host.table.applyDigest(digest, m.source, rebroadcast);
    if (m.phase === "request") {
      this.#host.env.sendReliable(m.replyTo, this.#pushPull("response", m.join));
    } else if (m.join) {
      this.#joined = true;
    }
  }

  /**
   * The first push-pull falls at `phase` (random) of the interval scaled to the cluster
   * size, which is only known once joined; without this, every member of a large cluster
   * started at once would push-pull within the first base interval.
   */
  #firstPushPull(phase: number): void {
    const table = this.#host.table;
    const startedAt = table.self.since;
    const dueMs = startedAt + phase * pushPullIntervalFor(this.#host.config, table.live);
    const now = this.#host.env.now();
    if (dueMs > now) {
      this.#host.after(dueMs - now, () => this.#pushPullTick());
    } else {
      this.#pushPullTick();
    }
  }

  #pushPullTick(): void {
    if (!this.#host.running()) return;
    const { env, table } = this.#host;
    const [partner] = this.#host.randomPeers(1, (m) => m.status === "alive");
    if (partner !== undefined) {
      env.sendReliable(partner.address, this.#pushPull("request", false));
    }
    // Serf's reconnect: retry dead members, at a rate that keeps the cluster-wide total
    // near one attempt per dead member per interval, so a healed partition merges back.
    const dead = table.peers.filter((m) => m.status === "dead");
    if (dead.length > 0 && env.random() < dead.length / Math.max(1, table.live - 1)) {
      const member = dead[Math.floor(env.random() * dead.length)];
      env.sendReliable(member.address, this.#pushPull("request", false));
    }
    const intervalMs = pushPullIntervalFor(this.#host.config, table.live);
    this.#host.after(intervalMs, () => this.#pushPullTick());
  }

  #join(seeds: string[], retryMs: number): void {
    for (const seed of seeds) this.#host.env.sendReliable(seed, this.#pushPull("request", true));
    this.#host.after(retryMs, () => {
      if (this.#joined || !this.#host.running()) return;
      this.#join(seeds, Math.min(2 * retryMs, this.#host.config.pushPullIntervalMs));
    });
  }

  #pushPull(phase: "request" | "response", join: boolean): PushPullMessage {
    const members: MemberDigest[] = [];
    for (const m of this.#host.table.all()) {
      const { id, address, zone, weight, incarnation, status } = m;
      members.push({ id, address, zone, weight, incarnation, status });
    }
    const replyTo = this.#host.table.self.address;
    return { type: "push-pull", phase, join, source: this.#host.selfId, replyTo, members };
  }
}
