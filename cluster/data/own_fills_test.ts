/**
 * Goal: a node's own copy of a large change (its writer's, which the volume's
 * reads here come from) goes around the page cache only when it adds bytes to
 * the object (a fill, or a copy replaced whole), and stays in the page cache
 * when it overwrites bytes the object holds; a change from a peer goes around
 * it either way. Every state reads back whole, before and after a restart.
 * Method: an ObjectReplica on a LocalEngine on the real disk (which takes
 * O_DIRECT), changes applied in process as the writer applies its own, the
 * node's count of direct object writes (`atoll_disk_direct_writes_total`)
 * read after each.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { patternBytes } from "../../tests/_files.ts";
import { LocalEngine } from "../../core/mod.ts";
import { directWrites, directWritesAvailable } from "../../metrics/mod.ts";
import { ObjectReplica } from "./object_service.ts";
import { JournalDisk } from "./journal_disk.ts";
import type { ObjectChange } from "./object_link.ts";

const MiB = 1024 * 1024;
const name = `${"ab".repeat(16)}.1.0`;

async function objectWritesDirect(): Promise<number> {
  const { values } = await directWrites.get();
  return values.find((v) => v.labels.kind === "object" && v.labels.result === "direct")?.value ??
    0;
}

async function withReplica(dir: string, run: (replica: ObjectReplica) => Promise<void>) {
  const engine = await LocalEngine.open({ dir });
  const replica = new ObjectReplica("n1", engine, { journal: new JournalDisk(`${dir}/journal`) });
  try {
    // The counts below mean nothing on a file system that refuses O_DIRECT (tmpfs): say so.
    const available = (await directWritesAvailable.get()).values[0]?.value;
    assert.equal(available, 1, `the data disk under ${dir} takes O_DIRECT writes`);
    await run(replica);
  } finally {
    await replica.close();
    await engine.close();
  }
}

Deno.test("a node's own large changes go around the page cache only when they add bytes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-own-fills-" });
  try {
    const expected = new Uint8Array(3 * MiB);
    const steps: {
      what: string;
      change: Omit<ObjectChange, "epoch" | "version">;
      fromPeer?: boolean;
      direct: number;
    }[] = [
      {
        what: "a new object's first MiB",
        change: { offset: 0, data: patternBytes(MiB, 1) },
        direct: 1,
      },
      {
        what: "the next MiB, past its end",
        change: { offset: MiB, data: patternBytes(MiB, 2) },
        direct: 1,
      },
      {
        what: "an overwrite of its first MiB",
        change: { offset: 0, data: patternBytes(MiB, 3) },
        direct: 0,
      },
      {
        what: "an overwrite that also extends it",
        change: { offset: MiB, data: patternBytes(2 * MiB, 4) },
        direct: 0,
      },
      {
        what: "an overwrite from a peer",
        change: { offset: 0, data: patternBytes(MiB, 5) },
        fromPeer: true,
        direct: 1,
      },
    ];
    await withReplica(dir, async (replica) => {
      for (const [i, step] of steps.entries()) {
        const before = await objectWritesDirect();
        const change = { ...step.change, epoch: 1, version: i + 1 };
        const reply = await replica.change(name, change, { fromPeer: step.fromPeer });
        assert.equal(reply.applied, true, step.what);
        expected.set(step.change.data, step.change.offset);
        assert.equal((await objectWritesDirect()) - before, step.direct, step.what);
        const read = await replica.read(name, 0, expected.length);
        assert.deepEqual(read.stamp, [1, i + 1], step.what);
        assert.ok(Buffer.from(read.data).equals(expected), `${step.what}: reads back`);
      }
      // A copy replaced whole (healing, or a writer bringing it up) is new bytes too.
      const before = await objectWritesDirect();
      const whole = patternBytes(2 * MiB, 6);
      const reply = await replica.change(name, {
        offset: 0,
        data: whole,
        epoch: 2,
        version: 1,
        replace: true,
      });
      assert.equal(reply.applied, true);
      assert.equal((await objectWritesDirect()) - before, 1, "a copy replaced whole");
      expected.fill(0).set(whole);
      await replica.flush([name]);
    });
    await withReplica(dir, async (replica) => {
      const read = await replica.read(name, 0, 2 * MiB);
      assert.deepEqual(read.stamp, [2, 1]);
      assert.ok(Buffer.from(read.data).equals(expected.subarray(0, 2 * MiB)), "after a restart");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
