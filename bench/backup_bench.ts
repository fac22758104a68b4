/**
 * Backup throughput against a plain S3 upload of the same bytes, in the same
 * run and against the same throwaway radosgw (tests/_radosgw.ts), so that both
 * see the same noise: ratios, not absolutes.
 *
 * Each round, in alternating order:
 * - reference: a plain PUT loop of the volume's blocks (4 MiB objects, the
 *   same client library, aws4fetch, and the same number of requests in flight),
 *   then a plain GET loop of them;
 * - Atoll: a full `backup push` of a snapshot to a fresh prefix, then a
 *   `backup restore` of it as an image (a node's ordinary upload path: hashed,
 *   stored, flushed).
 * Then a push of an unchanged second snapshot (what a forever-incremental
 * backup costs when nothing changed: every entry read, hashed and found).
 *
 * Run: `deno task bench:backup [--size-mib 256] [--rounds 3]` (not part of CI).
 */
import { parseArgs } from "node:util";
import { S3Bucket, s3ConfigFromEnvironment } from "../backup/mod.ts";
import { transfersMax } from "../backup/limits.ts";
import { startNode } from "../tests/_node.ts";
import { ensureRadosgwPackages, startRadosgw } from "../tests/_radosgw.ts";
import { median } from "./upload_bench.ts";

const MiB = 1024 * 1024;
const blockBytes = 4 * MiB;

async function post(url: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`POST ${url}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** Runs `work` on indexes 0..count-1, `transfersMax` at once. */
async function parallel(count: number, work: (index: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: transfersMax }, async () => {
    for (let index = next++; index < count; index = next++) await work(index);
  }));
}

async function seconds(work: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await work();
  return (performance.now() - start) / 1000;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    "size-mib": { type: "string", default: "256" },
    rounds: { type: "string", default: "3" },
  },
});
const sizeMib = Number(values["size-mib"]);
const rounds = Number(values.rounds);
const bytes = sizeMib * MiB;
const blocks = bytes / blockBytes;

await ensureRadosgwPackages();
const store = await startRadosgw();
const node = await startNode({ env: store.env });
try {
  const bucket = new S3Bucket(s3ConfigFromEnvironment(store.env), "bench");
  await bucket.createBucket();
  await post(`${node.url}/v1/volumes`, { name: "vm", size: bytes });
  const data = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at += 65536) crypto.getRandomValues(data.subarray(at, at + 65536));
  const written = await fetch(`${node.url}/v1/volumes/vm/data?offset=0`, {
    method: "PATCH",
    body: data,
  });
  if (!written.ok) throw new Error(`Cannot write the volume: ${await written.text()}`);
  await written.body?.cancel();
  await post(`${node.url}/v1/volumes/vm/snapshots`, { name: "s1" });

  const rates = {
    put: [] as number[],
    get: [] as number[],
    push: [] as number[],
    restore: [] as number[],
  };
  for (let round = 0; round < rounds; round++) {
    const reference = async () => {
      rates.put.push(
        bytes / await seconds(() =>
          parallel(blocks, (index) =>
            bucket.put(
              `plain${round}/${index}`,
              data.subarray(index * blockBytes, (index + 1) * blockBytes),
            ))
        ),
      );
      rates.get.push(
        bytes /
          await seconds(() =>
            parallel(blocks, async (index) => void await bucket.get(`plain${round}/${index}`))
          ),
      );
    };
    const atoll = async () => {
      const target = `s3://bench/atoll${round}`;
      rates.push.push(
        bytes / await seconds(() => post(`${node.url}/v1/backups`, { snapshot: "vm@s1", target })),
      );
      rates.restore.push(
        bytes /
          await seconds(() =>
            post(`${node.url}/v1/backups/restore`, {
              backup: `${target}/vm@s1`,
              image: `r${round}`,
            })
          ),
      );
    };
    if (round % 2 === 0) {
      await reference();
      await atoll();
    } else {
      await atoll();
      await reference();
    }
  }
  await post(`${node.url}/v1/volumes/vm/snapshots`, { name: "s2" });
  const unchanged = await seconds(() =>
    post(`${node.url}/v1/backups`, { snapshot: "vm@s2", target: "s3://bench/atoll0" })
  );

  const rate = (list: number[]) => `${(median(list) / MiB).toFixed(1)} MiB/s`;
  console.log(
    `backup of a ${sizeMib} MiB volume of random data, ${rounds} rounds (medians), radosgw on one memstore OSD`,
  );
  console.log(`plain PUT loop   ${rate(rates.put)}`);
  console.log(
    `backup push      ${rate(rates.push)}   ratio ${
      (median(rates.push) / median(rates.put)).toFixed(2)
    }`,
  );
  console.log(`plain GET loop   ${rate(rates.get)}`);
  console.log(
    `backup restore   ${rate(rates.restore)}   ratio ${
      (median(rates.restore) / median(rates.get)).toFixed(2)
    }`,
  );
  console.log(
    `push of an unchanged snapshot: ${unchanged.toFixed(2)} s (${
      (bytes / unchanged / MiB).toFixed(0)
    } MiB/s of volume scanned)`,
  );
} finally {
  await node.stop();
  await Deno.remove(node.data, { recursive: true }).catch(() => {});
  await store.stop();
}
