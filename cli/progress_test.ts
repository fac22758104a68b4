import assert from "node:assert/strict";
import type { UploadResult, UploadStatus } from "./client.ts";
import {
  dedupRatio,
  formatDuration,
  type ProgressState,
  renderProgress,
  renderSummary,
  UploadProgress,
} from "./progress.ts";

const GiB = 1024 ** 3;

const halfway: ProgressState = {
  name: "debian",
  sentBytes: 1 * GiB,
  totalBytes: 2 * GiB,
  elapsedMs: 8000,
  node: { blocks: 256, zeroBlocks: 6, newBlocks: 150 },
};

Deno.test("renderProgress() shows bar, percent, bytes, rate, dedup and ETA", () => {
  assert.equal(
    renderProgress(halfway, 80),
    "debian [#######.......]   50%   1.0 GiB/2.0 GiB 128.0 MiB/s dedup 40% ETA 0:08",
  );
});

Deno.test("renderProgress() gives the bar the room a wide terminal has, up to 50 columns", () => {
  assert.match(renderProgress(halfway, 100), /^debian \[#{17}\.{17}\] /);
  const bar = renderProgress(halfway, 300).match(/\[[#.]+\]/)![0];
  assert.equal(bar.length, 50);
});

Deno.test("renderProgress() never writes into the last column, whatever the width", () => {
  const states: ProgressState[] = [
    halfway,
    { ...halfway, name: "x".repeat(100) },
    { ...halfway, totalBytes: null },
    { ...halfway, sentBytes: 0, elapsedMs: 0, node: null },
  ];
  for (const state of states) {
    for (let width = 0; width <= 200; width++) {
      assert.ok(renderProgress(state, width).length <= Math.max(0, width - 1), `width ${width}`);
    }
  }
});

Deno.test("renderProgress() drops the bar first, then the ETA, then the rate", () => {
  assert.equal(
    renderProgress(halfway, 70),
    "debian   50%   1.0 GiB/2.0 GiB 128.0 MiB/s dedup 40% ETA 0:08",
  );
  assert.equal(renderProgress(halfway, 60), "debian   50%   1.0 GiB/2.0 GiB 128.0 MiB/s dedup 40%");
  assert.equal(renderProgress(halfway, 45), "debian   50%   1.0 GiB/2.0 GiB dedup 40%");
  assert.equal(renderProgress(halfway, 20), "debian   50%   1.0 ");
});

Deno.test("renderProgress() keeps fields at a fixed width so the bar does not jitter", () => {
  const start = renderProgress({ ...halfway, sentBytes: 0, elapsedMs: 0, node: null }, 80);
  assert.equal(
    start,
    "debian [..............]    0%       0 B/2.0 GiB       0 B/s dedup  -- ETA --:--",
  );
  assert.equal(start.indexOf("]"), renderProgress(halfway, 80).indexOf("]"));
});

Deno.test("renderProgress() says finishing once every byte is sent", () => {
  const line = renderProgress({ ...halfway, sentBytes: 2 * GiB }, 80);
  assert.ok(line.endsWith("]  100%   2.0 GiB/2.0 GiB 256.0 MiB/s dedup 40% finishing"), line);
});

Deno.test("renderProgress() shows no bar or percent when the total is unknown", () => {
  assert.equal(
    renderProgress({ ...halfway, totalBytes: null }, 80),
    "debian 1.0 GiB 128.0 MiB/s dedup 40%".replace("debian ", "debian  "),
  );
});

Deno.test("renderProgress() shortens a long name with an ellipsis", () => {
  const line = renderProgress({ ...halfway, name: "a-very-long-image-name-for-testing-1" }, 100);
  assert.ok(line.startsWith("a-very-long-image-name-… ["), line);
});

Deno.test("dedupRatio() is the share of non-zero blocks already stored", () => {
  assert.equal(dedupRatio({ blocks: 10, zeroBlocks: 2, newBlocks: 6 }), 0.25);
  assert.equal(dedupRatio({ blocks: 4, zeroBlocks: 0, newBlocks: 4 }), 0);
  assert.equal(dedupRatio({ blocks: 4, zeroBlocks: 1, newBlocks: 0 }), 1);
});

Deno.test("dedupRatio() is null before any non-zero block was processed", () => {
  assert.equal(dedupRatio({ blocks: 0, zeroBlocks: 0, newBlocks: 0 }), null);
  assert.equal(dedupRatio({ blocks: 3, zeroBlocks: 3, newBlocks: 0 }), null);
});

Deno.test("formatDuration() writes m:ss, and h:mm:ss from an hour up", () => {
  assert.equal(formatDuration(0), "0:00");
  assert.equal(formatDuration(8.4), "0:08");
  assert.equal(formatDuration(65), "1:05");
  assert.equal(formatDuration(3600 + 62), "1:01:02");
  assert.equal(formatDuration(-3), "0:00");
});

const result: UploadResult = {
  name: "debian",
  size: 13 * 1024 * 1024,
  blockSize: 4 * 1024 * 1024,
  blocks: 4,
  zeroBlocks: 1,
  createdAt: "2026-01-01T00:00:00.000Z",
  newBlocks: 2,
  newBytes: 5 * 1024 * 1024,
  created: true,
};

Deno.test("renderSummary() gives size, time, rate, new blocks and bytes, and dedup", () => {
  assert.equal(
    renderSummary(result, 400),
    'Uploaded image "debian": 13.0 MiB in 0.4 s (32.5 MiB/s); 4 blocks: 2 new ' +
      "(5.0 MiB stored), 1 already stored, 1 zero; dedup 33%",
  );
});

Deno.test("renderSummary() says when the node already had the same image", () => {
  const line = renderSummary({ ...result, created: false, newBlocks: 0, newBytes: 0 }, 1000);
  assert.match(line, /^Uploaded image "debian" \(unchanged: the node had the same content\): /);
  assert.match(line, /0 new \(0 B stored\), 3 already stored, 1 zero; dedup 100%$/);
});

Deno.test("UploadProgress redraws in place, shows the node's dedup, and erases itself", async () => {
  const writes: string[] = [];
  let polls = 0;
  const status: UploadStatus = {
    name: "debian",
    startedAt: "",
    format: "raw",
    spooledBytes: 0,
    receivedBytes: 0,
    expectedBytes: null,
    blocks: 4,
    zeroBlocks: 0,
    newBlocks: 1,
    newBytes: 0,
  };
  const progress = new UploadProgress({
    name: "debian",
    totalBytes: 1000,
    poll: () => {
      polls++;
      return Promise.resolve([{ ...status, name: "other", newBlocks: 4 }, status]);
    },
    write: (text) => writes.push(text),
    width: () => 80,
    redrawIntervalMs: 5,
    pollIntervalMs: 10,
  });
  progress.start();
  progress.sent(500);
  await new Promise((resolve) => setTimeout(resolve, 100));
  await progress.stop();
  const count = writes.length;
  await new Promise((resolve) => setTimeout(resolve, 20));

  assert.equal(writes.length, count, "nothing is drawn after stop()");
  assert.ok(polls >= 2, `polled ${polls} times`);
  assert.ok(writes.every((text) => text.startsWith("\r") && !text.includes("\n")));
  assert.equal(writes.at(-1), "\r\x1b[K");
  assert.match(writes.at(-2)!, / {2}50% .* dedup 75% /);
});

Deno.test("UploadProgress ignores a failing poll and keeps drawing", async () => {
  const writes: string[] = [];
  const progress = new UploadProgress({
    name: "debian",
    totalBytes: 1000,
    poll: () => Promise.reject(new Error("node busy")),
    write: (text) => writes.push(text),
    width: () => 80,
    redrawIntervalMs: 5,
    pollIntervalMs: 5,
  });
  progress.start();
  await new Promise((resolve) => setTimeout(resolve, 50));
  await progress.stop();
  assert.ok(writes.at(-2)!.includes("dedup  --"), writes.at(-2));
});
