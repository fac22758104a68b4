import assert from "node:assert/strict";
import { JournalDisk } from "./journal_disk.ts";
import { decodeRecords, encodeRecord, type JournalRecord } from "./object_journal.ts";

const record = (i: number): JournalRecord => ({
  kind: "write",
  name: "o/v1.1.0",
  stamp: [1, i],
  offset: i * 4096,
  data: new Uint8Array(4096).fill(i),
  truncate: false,
});

async function settled(journal: JournalDisk, done: number): Promise<void> {
  for (let i = 0; i < 5000 && journal.syncs.done < done; i++) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

Deno.test("a journal syncs ahead only the append that follows a sync asked", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const journal = new JournalDisk(`${dir}/journal`);
    // Appends nobody flushes after start nothing.
    for (let i = 1; i <= 3; i++) journal.appendJournal(1, encodeRecord(record(i)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(journal.syncs, { done: 0, ahead: 0 });

    await journal.syncJournal(1);
    assert.deepEqual(journal.syncs, { done: 1, ahead: 0 });

    // The writer flushed: its next append is synced without being asked...
    journal.appendJournal(1, encodeRecord(record(4)));
    await settled(journal, 2);
    assert.deepEqual(journal.syncs, { done: 2, ahead: 1 });
    // ...so the FLUSH that follows finds nothing left to sync.
    await journal.syncJournal(1);
    assert.deepEqual(journal.syncs, { done: 2, ahead: 1 });

    // One more append after that FLUSH is synced ahead too; the next one, with no
    // FLUSH between, is not.
    journal.appendJournal(1, encodeRecord(record(5)));
    await settled(journal, 3);
    journal.appendJournal(1, encodeRecord(record(6)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(journal.syncs, { done: 3, ahead: 2 });
    await journal.syncJournal(1);
    assert.deepEqual(journal.syncs, { done: 4, ahead: 2 });

    const kept = [...decodeRecords(await journal.readJournal(1))].map((r) =>
      r.kind === "write" && r.stamp[1]
    );
    assert.deepEqual(kept, [1, 2, 3, 4, 5, 6]);
    assert.equal(journal.failure, null);
    journal.closeJournals();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a journal let go of right after an append starts no sync on a closed descriptor", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const journal = new JournalDisk(`${dir}/journal`);
    journal.appendJournal(1, encodeRecord(record(1)));
    await journal.syncJournal(1);
    journal.appendJournal(1, encodeRecord(record(2)));
    journal.closeJournals();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(journal.syncs, { done: 1, ahead: 0 });
    assert.equal(journal.failure, null);

    // A removal while a sync started ahead runs waits for it and closes once.
    const again = new JournalDisk(`${dir}/journal2`);
    again.appendJournal(7, encodeRecord(record(1)));
    await again.syncJournal(7);
    again.appendJournal(7, encodeRecord(record(2)));
    await new Promise((resolve) => setImmediate(resolve));
    await again.removeJournal(7);
    assert.equal(again.failure, null);
    assert.deepEqual(await again.journals(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a new journal is written on zeros ahead of its appends; a replay stops where they start", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const journal = new JournalDisk(`${dir}/journal`);
    const count = 300; // more than a step of zeros: the zeros move ahead of the appends
    for (let i = 1; i <= count; i++) journal.appendJournal(3, encodeRecord(record(i)));
    await journal.syncJournal(3);
    const bytes = await journal.readJournal(3);
    const appended = count * encodeRecord(record(1)).reduce((sum, part) => sum + part.length, 0);
    assert.ok(bytes.length > appended, `zeros past the ${appended} bytes appended`);
    assert.ok(bytes.subarray(appended).every((byte) => byte === 0), "only zeros after them");
    const stamps = [...decodeRecords(bytes)].map((r) => r.kind === "write" && r.stamp[1]);
    assert.deepEqual(stamps, Array.from({ length: count }, (_, i) => i + 1));

    // A record torn by a crash, on the zeros: the replay ends before it, as at a file's end.
    const torn = new Uint8Array(bytes);
    torn.set(encodeRecord(record(count + 1))[0], appended);
    assert.equal([...decodeRecords(torn)].length, count);
    journal.closeJournals();

    // A journal from before a restart is never appended to: what follows its zeros
    // (or a torn record) would never be replayed.
    const restarted = new JournalDisk(`${dir}/journal`);
    assert.throws(() => restarted.appendJournal(3, encodeRecord(record(1))), /written before/);
    restarted.appendJournal(4, encodeRecord(record(1)));
    await restarted.syncJournal(4);
    assert.deepEqual(await restarted.journals(), [3, 4]);
    restarted.closeJournals();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a journal keeps every byte of records small and larger than its staging buffer", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const journal = new JournalDisk(`${dir}/journal`);
    const sizes = [4096, 300 * 1024, 1, 64 * 1024 + 5, 4096];
    const written = sizes.map((size, i): JournalRecord => ({
      kind: "write",
      name: "o/v1.1.0",
      stamp: [1, i + 1],
      offset: 0,
      data: Uint8Array.from({ length: size }, (_, j) => (j * 31 + i) & 0xff),
      truncate: false,
    }));
    for (const one of written) journal.appendJournal(4, encodeRecord(one));
    await journal.syncJournal(4);
    const back = [...decodeRecords(await journal.readJournal(4))];
    assert.deepEqual(
      back.map((r) => r.kind === "write" ? r.data : null),
      written.map((r) => r.kind === "write" ? r.data : null),
    );
    journal.closeJournals();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
