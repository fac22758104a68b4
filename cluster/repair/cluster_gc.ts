/**
 * Garbage collection in a cluster (the mark and sweep is core/gc.ts). Three
 * rules make it safe while other nodes upload and change the catalogue:
 *
 * - pins: before marking, and again before the second mark, every member
 *   that holds a place (dead ones within the grace period included) answers
 *   with the blocks its uploads in progress have stored, and so does every
 *   member gossip calls dead past the grace (it may only be paused or cut off,
 *   its uploads going on) unless an operator declared it lost; a member that
 *   cannot answer stops the collection (its uploads could lose blocks). One
 *   that left stopped with its uploads: its silence is no answer to wait for;
 * - a second mark after a pause, so that a record another node wrote while the
 *   first mark ran (a clone of a source being deleted) still counts;
 * - age: a replica deletes an unreferenced block only when it was stored, or
 *   stored again by a deduplicating put, before the pins were taken (its age
 *   exceeds the time since then, plus a margin) and at least `minAgeMs` ago.
 *   Whatever an upload stores after the pins were taken is thus kept. Ages are
 *   measured on each replica's clock against a duration from this node's, so
 *   clock offsets between hosts do not matter.
 */
import {
  type Clock,
  ConflictError,
  isBlockName,
  isObjectName,
  type Store,
  systemClock,
} from "../../core/mod.ts";
import type { GcPolicy } from "../../core/store.ts";
import type { ClusterEngine } from "../cluster_engine.ts";
import type { RpcCaller, RpcMethod } from "../transport/mod.ts";

/** Default age below which no block is collected (`--gc-min-age`). */
export const gcMinAgeMsDefault = 60_000;
/** Added to the time since the pins were taken (clock granularity, a slow stat). */
const ageMarginMs = 250;
/** Default pause between the two marks (`--gc-settle`). */
export const gcSettleMsDefault = 10_000;
/** Most hashes one `block.collect` call names. */
const collectBatchMax = 4096;

/** The policy a store in a cluster collects garbage with. */
export function clusterGcPolicy(
  options: {
    engine: ClusterEngine;
    rpc: RpcCaller;
    minAgeMs: number;
    settleMs: number;
    /** The clock of block ages and the settle pause; the system's unless told. */
    clock?: Clock;
  },
): GcPolicy {
  const { engine, rpc, settleMs } = options;
  const clock = options.clock ?? systemClock;
  let pinsTakenAt = clock.now();
  let pins = new Set<string>();
  const minAge = () =>
    Math.max(options.minAgeMs, Math.ceil(clock.now() - pinsTakenAt) + ageMarginMs);
  /** Adds to `pins` what every member's uploads in progress hold. */
  const askPins = async () => {
    // Members gossip declared dead within the grace period are asked too: one
    // may still run, cut off for a while, with an upload whose blocks are old
    // enough to collect and whose record it writes once it is back.
    for (const member of engine.placementMembers()) {
      if (member.id === engine.selfId) continue;
      let hashes: unknown;
      try {
        hashes = (await rpc.call(member.address, "store.pins", { header: {} })).header.hashes;
      } catch (cause) {
        throw new ConflictError(
          `Cannot collect garbage: member ${member.id} (${member.address}) did not say which ` +
            `blocks its uploads hold; try again when it answers`,
          { cause },
        );
      }
      for (const hash of Array.isArray(hashes) ? hashes : []) pins.add(String(hash));
    }
    // So are members gossip called dead or gone past the grace: one may run still,
    // unseen by this node, with map pages it stored for a record it has not written yet
    // (seed 1429634 with joins and leaves: a lease holder's snapshot stored a page and
    // failed; a collector that had restarted and saw the holder dead swept the page, and
    // the holder's next flush wrote a record naming it), or with an upload. A dead one's
    // silence stops the collection: it may be paused rather than crashed (seed 10560212
    // with joins and leaves: a member paused past the grace, its upload's blocks stored
    // long before, stayed silent; the collection went on, swept a block the upload had
    // deduplicated, and the upload, resumed, committed an image naming it). Only a restart
    // (it answers, with no uploads), an operator declaring it lost, or gossip forgetting
    // it (a day) ends that wait. One that left stopped its uploads when it stopped.
    const placed = new Set(engine.placementMembers().map((member) => member.id));
    const gone = engine.goneMembers().filter((member) => !placed.has(member.id));
    const answers = await Promise.allSettled(
      gone.map((member) => rpc.call(member.address, "store.pins", { header: {} })),
    );
    answers.forEach((answer, i) => {
      if (answer.status === "fulfilled") {
        const hashes: unknown = answer.value.header.hashes;
        for (const hash of Array.isArray(hashes) ? hashes : []) pins.add(String(hash));
      } else if (gone[i].status === "dead") {
        throw new ConflictError(
          `Cannot collect garbage: member ${gone[i].id} (${gone[i].address}), dead to gossip, ` +
            `did not say which blocks its uploads hold (it may only be paused); try again when ` +
            `it answers, or declare it lost if it is gone for good (atoll cluster lost)`,
          { cause: answer.reason },
        );
      }
    });
  };
  return {
    minAgeMs: options.minAgeMs,
    async pinned() {
      pinsTakenAt = clock.now();
      pins = new Set<string>();
      await askPins();
      return pins;
    },
    async settle() {
      await clock.sleep(settleMs);
      // Again, before the second mark: a member this node had not heard of yet (it
      // joined moments before) was not asked, and an upload it began before the pins
      // were taken could commit after the first mark (seed 770362 with joins, leaves and
      // replacements: its image's blocks were collected, then cloned). Once asked here,
      // such an upload is either pinned still or committed, and the second mark sees it.
      await askPins();
    },
    async deleteObject(name) {
      // Garbage objects belong to deleted volumes or older generations: nobody
      // writes them, so they go without a lease (their stamps stay, as tombstones).
      await engine.local.deleteObject(name);
      const calls = await Promise.allSettled(
        engine.liveMembers().filter((member) => member.id !== engine.selfId).map((member) =>
          rpc.call(member.address, "object.collect", { header: { names: [name] } })
        ),
      );
      const failed = calls.find((call) => call.status === "rejected");
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    },
    async deleteBlock(hash) {
      const minAgeMs = minAge();
      const here = engine.local.deleteBlockIfOlderThan(hash, minAgeMs);
      const there = await Promise.allSettled(
        engine.liveMembers().filter((member) => member.id !== engine.selfId).map(async (member) => {
          const reply = await rpc.call(member.address, "block.collect", {
            header: { hashes: [hash], minAgeMs },
          });
          return reply.header.kept === 0;
        }),
      );
      return here && there.every((result) => result.status === "fulfilled" && result.value);
    },
  };
}

/** The methods other members call for garbage collection. */
export function gcMethods(store: Store, engine: ClusterEngine): Record<string, RpcMethod> {
  return {
    "store.pins": () => ({ header: { hashes: store.pins() } }),
    "object.collect": async (request) => {
      const names = request.header.names;
      if (!Array.isArray(names) || names.length > collectBatchMax) throw new TypeError("bad names");
      for (const name of names) {
        if (!isObjectName(String(name))) throw new TypeError("bad object name");
        await engine.local.deleteObject(String(name));
      }
      return { header: {} };
    },
    "block.collect": (request) => {
      const { hashes, minAgeMs } = request.header;
      if (!Array.isArray(hashes) || hashes.length > collectBatchMax) {
        throw new TypeError("bad hashes");
      }
      if (!Number.isSafeInteger(minAgeMs) || (minAgeMs as number) < 0) {
        throw new TypeError("bad minAgeMs");
      }
      let kept = 0;
      for (const hash of hashes) {
        if (!isBlockName(String(hash))) throw new TypeError("bad hash");
        if (!engine.local.deleteBlockIfOlderThan(String(hash), minAgeMs as number)) kept++;
      }
      return { header: { kept } };
    },
  };
}
