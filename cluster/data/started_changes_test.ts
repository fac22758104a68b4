/**
 * Goal: a replica answers a large change from a peer once its write is under
 * way (NodeDisk.startObjectWrite), and nothing is lost by it: the link's
 * reused buffer the change arrived in is kept until the write is done, the
 * flush that answers for the change covers its bytes, and a write that fails
 * after its answer gives the copy up instead of letting a flush or a read
 * claim it.
 * Method: an ObjectReplica on a LocalEngine behind a real link server with
 * pooled bodies; 32 changes of 1 MiB, eight objects at once, then reads, a
 * flush and a restart of the replica on its files. For the failure, the
 * engine's directory is a 3 MiB tmpfs mounted by the test (as root).
 */
import assert from "node:assert/strict";
import { bytesSha256, patternBytes } from "../../tests/_files.ts";
import { LocalEngine, type NodeDisk } from "../../core/mod.ts";
import { withLinkedReplica } from "../../tests/_linked_replica.ts";
import { directWrites } from "../../metrics/mod.ts";
import { ObjectReplica } from "./object_service.ts";
import { JournalDisk } from "./journal_disk.ts";
import { compareStamps } from "./object_link.ts";
import { withSmallDisk } from "../../tests/_small_disk.ts";

const MiB = 1024 * 1024;
const uid = "ef".repeat(16);

async function objectWritesDirect(): Promise<number> {
  const { values } = await directWrites.get();
  return values.find((v) => v.labels.kind === "object" && v.labels.result === "direct")?.value ??
    0;
}

Deno.test("large changes over a link are answered as their writes start, and lose nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-started-changes-" });
  try {
    let started = 0;
    // The replica's view of its engine counts the writes it starts (and answers before done).
    const disk = (engine: LocalEngine): NodeDisk =>
      new Proxy(engine, {
        get(target, key) {
          const value = Reflect.get(target, key, target);
          if (typeof value !== "function") return value;
          if (key !== "startObjectWrite") return value.bind(target);
          return (...args: Parameters<NodeDisk["startObjectWrite"]>) => {
            started++;
            return target.startObjectWrite(...args);
          };
        },
      });
    const before = await objectWritesDirect();
    const names = Array.from({ length: 8 }, (_, i) => `${uid}.1.${i}`);
    const expected = names.map(() => new Uint8Array(4 * MiB));
    await withLinkedReplica(dir, { disk }, async (remote) => {
      // Every change sent at once: frames keep arriving (into the link's reused buffers)
      // while the writes of those before them are under way.
      await Promise.all(names.flatMap((name, i) =>
        [1, 2, 3, 4].map(async (version) => {
          const data = patternBytes(MiB, i * 4 + version);
          const offset = (version - 1) * MiB;
          expected[i].set(data, offset);
          const reply = await remote.change(name, { epoch: 1, version, offset, data });
          assert.deepEqual(reply, { applied: true, stamp: [1, version], moved: false });
        })
      ));
      assert.equal(started, 32, "every change was answered once its write started");
      for (const [i, name] of names.entries()) {
        const into = new Uint8Array(4 * MiB);
        const { data, stamp, release } = await remote.read(name, 0, 4 * MiB, into);
        assert.deepEqual(stamp, [1, 4]);
        assert.equal(bytesSha256(data), bytesSha256(expected[i]), `object ${i} as written`);
        release?.();
      }
      assert.equal(await objectWritesDirect() - before, 32, "every change went around the cache");
      const flushed = await remote.flush(names);
      assert.deepEqual(flushed, names.map(() => [1, 4]));
    });
    // The flush answered for every change: a replica restarted on its files finds them all.
    const engine = await LocalEngine.open({ dir });
    const replica = new ObjectReplica("n1", engine, { journal: new JournalDisk(`${dir}/journal`) });
    try {
      for (const [i, name] of names.entries()) {
        const { data, stamp } = await replica.read(name, 0, 4 * MiB);
        assert.deepEqual(stamp, [1, 4]);
        assert.equal(bytesSha256(data), bytesSha256(expected[i]), `object ${i} after the restart`);
      }
    } finally {
      await replica.close();
      await engine.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a large change whose write fails after its answer gives the copy up, never claims it", () =>
  onSmallDisk(-64 * MiB, async (replica) => {
    const name = `${uid}.1.0`;
    const change = (version: number, data: Uint8Array, replace = false) => {
      let written: Promise<unknown> = Promise.resolve();
      const reply = replica.change(name, { epoch: 1, version, offset: 0, data, replace }, {
        fromPeer: true,
        keep: (until) => written = until,
      });
      return reply.then((reply) => ({ reply, written }));
    };
    const first = await change(1, patternBytes(MiB, 1), true);
    await first.written;
    assert.deepEqual(await replica.flush([name]), [[1, 1]]);
    // 4 MiB into the 2 MiB left: answered, then refused by the disk.
    const lost = await change(2, patternBytes(4 * MiB, 2));
    assert.deepEqual(lost.reply, { applied: true, stamp: [1, 2] });
    await assert.rejects(lost.written, /no space/i);
    const flushed = await replica.flush([name]).catch((error: Error) => error);
    if (!(flushed instanceof Error)) {
      assert.ok(compareStamps(flushed[0], [1, 2]) < 0, `no flush answers for the lost write`);
    }
    // Given up: no stamp, so the writer's next change finds the copy behind and replaces it.
    assert.deepEqual(await replica.stamps([name]), [[0, 0]]);
    assert.deepEqual((await change(3, patternBytes(4096, 3))).reply, {
      applied: false,
      stamp: [0, 0],
    });
    const whole = patternBytes(512 * 1024, 4);
    const replaced = await change(3, whole, true);
    assert.deepEqual(replaced.reply, { applied: true, stamp: [1, 3] });
    await replaced.written;
    assert.deepEqual(await replica.flush([name]), [[1, 3]]);
    const { data, stamp } = await replica.read(name, 0, whole.length);
    assert.deepEqual(stamp, [1, 3]);
    assert.equal(bytesSha256(data), bytesSha256(whole), "the replacement's bytes");
  }));

Deno.test("on a nearly full disk a large change is written before its answer, and refused", () =>
  onSmallDisk(undefined, async (replica) => { // the default room: 64 MiB
    const name = `${uid}.1.0`;
    const options = { fromPeer: true, keep: () => {} };
    const data = patternBytes(4 * MiB, 1);
    await assert.rejects(
      replica.change(name, { epoch: 1, version: 1, offset: 0, data, replace: true }, options),
      /no space/i,
    );
    assert.deepEqual(await replica.stamps([name]), [[0, 0]], "nothing claimed");
    const fits = patternBytes(MiB, 2);
    const reply = await replica.change(
      name,
      { epoch: 1, version: 1, offset: 0, data: fits },
      options,
    );
    assert.deepEqual(reply, { applied: true, stamp: [1, 1] });
    assert.deepEqual(await replica.flush([name]), [[1, 1]]);
    assert.equal(bytesSha256((await replica.read(name, 0, MiB)).data), bytesSha256(fits));
  }));

/**
 * An ObjectReplica on a LocalEngine on a 3 MiB tmpfs (`startRoomBytes`: the
 * engine's option), its journal on the disk of the temporary directory.
 */
async function onSmallDisk(
  startRoomBytes: number | undefined,
  run: (replica: ObjectReplica) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-started-journal-" });
  try {
    await withSmallDisk("3m", async (disk) => {
      const engine = await LocalEngine.open({ dir: disk, startRoomBytes });
      const replica = new ObjectReplica("n1", engine, {
        journal: new JournalDisk(`${dir}/journal`),
      });
      try {
        await run(replica);
      } finally {
        await replica.close();
        await engine.close().catch(() => {}); // a copy still lost fails its flush
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
