/**
 * End-to-end tests of the client subcommands: a real node (startNode) and the
 * CLI run as a real subprocess (`deno run -A main.ts ...`), checking what an
 * operator sees: stdout, the one stderr line of a failure, and the exit code.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { removeData, startNode } from "./_node.ts";
import { atollCli } from "./_cli.ts";

const root = new URL("../", import.meta.url).pathname;
const MiB = 1024 * 1024;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `atoll ARGS` with ATOLL_NODE and ATOLL_TOKEN cleared unless `env` sets them. */
function atoll(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return atollCli(args, env);
}

/** Asserts success with nothing on stderr; returns stdout's lines. */
function succeeded(run: Run): string[] {
  assert.equal(run.stderr, "", `stderr: ${run.stderr}`);
  assert.equal(run.code, 0, `stdout: ${run.stdout}`);
  return run.stdout.trimEnd().split("\n");
}

/** Asserts a failure: the exit code, exactly one `atoll: ` line on stderr, nothing on stdout. */
function failed(run: Run, code: number, message: RegExp): void {
  assert.equal(run.code, code, `stdout: ${run.stdout}\nstderr: ${run.stderr}`);
  assert.equal(run.stdout, "");
  const lines = run.stderr.split("\n");
  assert.equal(lines.length, 2, `one line expected on stderr:\n${run.stderr}`);
  assert.equal(lines[1], "");
  assert.match(lines[0], /^atoll: /);
  assert.match(lines[0], message);
}

/**
 * 13 MiB in 4 blocks of 4 MiB: A, A again (dedup within the image), zeros (never
 * stored), and 1 MiB of B. Expected: 2 new blocks, 1 already stored, 1 zero.
 */
async function writeImage(dir: string): Promise<string> {
  const a = new Uint8Array(4 * MiB);
  const b = new Uint8Array(1 * MiB);
  for (let offset = 0; offset < a.length; offset += 65536) {
    crypto.getRandomValues(a.subarray(offset, offset + 65536));
  }
  crypto.getRandomValues(b.subarray(0, 65536));
  const image = new Uint8Array(13 * MiB);
  image.set(a, 0);
  image.set(a, 4 * MiB);
  image.set(b, 12 * MiB);
  const path = join(dir, "debian.raw");
  await Deno.writeFile(path, image);
  return path;
}

/** Splits a table's lines into cells. */
function rows(lines: string[]): string[][] {
  return lines.map((line) => line.trim().split(/\s{2,}/));
}

Deno.test("image, volume, snapshot and cluster commands drive a real node", async (t) => {
  const node = await startNode();
  const dir = await Deno.makeTempDir({ prefix: "atoll-cli-" });
  const at = ["--node", node.url];
  try {
    const file = await writeImage(dir);

    await t.step("image upload prints one summary line with the dedup it saw", async () => {
      const [line, ...rest] = succeeded(await atoll([...at, "image", "upload", file, "debian"]));
      assert.deepEqual(rest, []);
      assert.match(
        line,
        /^Uploaded image "debian": 13\.0 MiB in [\d.]+ s \([\d.]+ [KMG]?i?B\/s\); 4 blocks: 2 new \(5\.0 MiB stored\), 1 already stored, 1 zero; dedup 33%$/,
      );
    });

    await t.step("image upload of the same bytes again stores nothing new", async () => {
      const [line] = succeeded(await atoll([...at, "image", "upload", file, "debian"]));
      assert.match(line, /^Uploaded image "debian" \(unchanged: the node had the same content\)/);
      assert.match(line, /0 new \(0 B stored\), 3 already stored, 1 zero; dedup 100%$/);
    });

    await t.step("image ls shows the image in an aligned table", async () => {
      const lines = succeeded(await atoll([...at, "image", "ls"]));
      assert.match(lines[0], /^NAME\s+SIZE\s+BLOCKS\s+ZERO\s+CREATED$/);
      assert.equal(lines.length, 2);
      assert.deepEqual(rows(lines)[1].slice(0, 4), ["debian", "13.0 MiB", "4", "1"]);
      assert.equal(lines[0].indexOf("CREATED"), lines[1].search(/\d{4}-\d\d-\d\dT/));
    });

    await t.step("image ls --json prints the node's JSON", async () => {
      const images = JSON.parse((await atoll([...at, "--json", "image", "ls"])).stdout);
      assert.equal(images.length, 1);
      assert.equal(images[0].size, 13 * MiB);
    });

    await t.step("volume create --image prints the new volume", async () => {
      const lines = succeeded(await atoll([...at, "volume", "create", "vm1", "--image", "debian"]));
      assert.deepEqual(lines.slice(0, 5), [
        "name:       vm1",
        "size:       13.0 MiB (13631488 bytes)",
        "block size: 4.0 MiB",
        "origin:     image debian",
        "allocated:  3 of 4 blocks",
      ]);
      assert.match(lines[5], /^created: {4}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    });

    await t.step("volume create --size accepts binary suffixes", async () => {
      const lines = succeeded(await atoll([...at, "volume", "create", "blank", "--size", "10G"]));
      assert.ok(lines.includes("size:       10.0 GiB (10737418240 bytes)"), lines.join("\n"));
      assert.ok(lines.includes("origin:     empty"));
    });

    await t.step("volume info prints key: value lines, or JSON", async () => {
      const lines = succeeded(await atoll([...at, "volume", "info", "vm1"]));
      assert.equal(lines[0], "name:       vm1");
      const info = JSON.parse((await atoll([...at, "volume", "info", "vm1", "--json"])).stdout);
      assert.deepEqual(info.origin, { kind: "image", image: "debian" });
    });

    await t.step("snapshot create and snapshot ls", async () => {
      const lines = succeeded(await atoll([...at, "snapshot", "create", "vm1@s1"]));
      assert.equal(lines[0], "snapshot:   vm1@s1");
      const table = succeeded(await atoll([...at, "snapshot", "ls", "vm1"]));
      assert.match(table[0], /^SNAPSHOT\s+SIZE\s+CREATED$/);
      assert.deepEqual(rows(table).slice(1).map((row) => row.slice(0, 2)), [
        ["vm1@s1", "13.0 MiB"],
      ]);
    });

    await t.step("volume create --snapshot clones the snapshot", async () => {
      const lines = succeeded(
        await atoll([...at, "volume", "create", "vm2", "--snapshot", "vm1@s1"]),
      );
      assert.ok(lines.includes("origin:     snapshot vm1@s1"), lines.join("\n"));
    });

    await t.step("volume ls lists every volume with its origin", async () => {
      const table = rows(succeeded(await atoll([...at, "volume", "ls"])));
      assert.deepEqual(table[0], ["NAME", "SIZE", "ORIGIN", "ALLOCATED", "CREATED"]);
      assert.deepEqual(table.slice(1).map((row) => row.slice(0, 4)), [
        ["blank", "10.0 GiB", "empty", "0/2560"],
        ["vm1", "13.0 MiB", "image debian", "3/4"],
        ["vm2", "13.0 MiB", "snapshot vm1@s1", "3/4"],
      ]);
    });

    await t.step("volume rm of a volume with snapshots fails with one line", async () => {
      failed(
        await atoll([...at, "volume", "rm", "vm1"]),
        1,
        /^atoll: Cannot delete volume "vm1": .*snapshot/,
      );
    });

    await t.step("volume rm --cascade deletes the volume and its snapshots", async () => {
      const lines = succeeded(await atoll([...at, "volume", "rm", "vm1", "--cascade"]));
      assert.deepEqual(lines, ['Deleted volume "vm1" and its snapshots']);
      const names = rows(succeeded(await atoll([...at, "volume", "ls"]))).slice(1);
      assert.deepEqual(names.map((row) => row[0]), ["blank", "vm2"]);
      failed(await atoll([...at, "volume", "info", "vm1"]), 1, /Cannot show volume "vm1": /);
    });

    await t.step("snapshot rm deletes one snapshot", async () => {
      succeeded(await atoll([...at, "snapshot", "create", "vm2@s2"]));
      const lines = succeeded(await atoll([...at, "snapshot", "rm", "vm2@s2"]));
      assert.deepEqual(lines, ['Deleted snapshot "vm2@s2"']);
      assert.equal(succeeded(await atoll([...at, "snapshot", "ls", "vm2"])).length, 1);
    });

    await t.step("image rm deletes the image; its clones live on", async () => {
      assert.deepEqual(succeeded(await atoll([...at, "image", "rm", "debian"])), [
        'Deleted image "debian"',
      ]);
      assert.equal(succeeded(await atoll([...at, "image", "ls"])).length, 1);
      succeeded(await atoll([...at, "volume", "info", "vm2"]));
      failed(await atoll([...at, "image", "rm", "debian"]), 1, /Cannot delete image "debian": /);
    });

    await t.step("cluster status lists this node, alive", async () => {
      const table = rows(succeeded(await atoll([...at, "cluster", "status"])));
      assert.deepEqual(table[0], ["ID", "ADDRESS", "STATE", "ZONE"]);
      assert.equal(table.length, 2);
      assert.equal(table[1][2], "alive");
      // Only the host for now: the node reports its --http flag ("127.0.0.1:0" here),
      // not the port it bound (cli/serve.ts); then this should equal node.url.
      assert.match(table[1][1], /^127\.0\.0\.1:\d+$/);
    });

    await t.step("ATOLL_NODE stands in for --node", async () => {
      succeeded(await atoll(["cluster", "status"], { ATOLL_NODE: node.url }));
    });

    await t.step("usage errors exit 2 with one line naming the problem", async () => {
      failed(
        await atoll([...at, "volume", "frobnicate"]),
        2,
        /unknown command "volume frobnicate"/,
      );
      failed(await atoll([...at, "disk", "ls"]), 2, /unknown command "disk"/);
      failed(await atoll([...at, "image", "ls", "--frobnicate"]), 2, /unknown option --frobnicate/);
      failed(await atoll([...at, "image", "ls", "--force"]), 2, /--force does not apply/);
      failed(await atoll([...at, "image", "ls", "--cascade"]), 2, /--cascade does not apply/);
      failed(await atoll([...at, "image", "upload", file]), 2, /missing NAME/);
      failed(await atoll([...at, "volume", "create", "v"]), 2, /give --image or --snapshot/);
      failed(await atoll([...at, "volume", "create", "v", "--size", "ten"]), 2, /size "ten"/);
      failed(await atoll([...at, "snapshot", "create", "vm2"]), 2, /expected VOLUME@SNAPSHOT/);
    });

    await t.step("an upload of a missing file fails with one line", async () => {
      failed(
        await atoll([...at, "image", "upload", join(dir, "nope.raw"), "x"]),
        1,
        /^atoll: Cannot upload image "x": cannot open .*nope\.raw: no such file$/,
      );
    });
  } finally {
    await node.stop();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a node with a token rejects the CLI without it and accepts --token-file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-cli-" });
  const tokenFile = join(dir, "token");
  const token = "s3cret-token-0123456789";
  await Deno.writeTextFile(tokenFile, token + "\n");
  const node = await startNode({ args: ["--token-file", tokenFile] });
  const at = ["--node", node.url];
  try {
    failed(
      await atoll([...at, "volume", "ls"]),
      1,
      /^atoll: Cannot list volumes: cannot authorize request: .*token.* \(give --token-file F or set ATOLL_TOKEN\)$/,
    );
    const wrong = join(dir, "wrong");
    await Deno.writeTextFile(wrong, "not-the-token-at-all");
    failed(await atoll([...at, "--token-file", wrong, "volume", "ls"]), 1, /authorize/);

    const table = succeeded(await atoll([...at, "--token-file", tokenFile, "volume", "ls"]));
    assert.deepEqual(rows(table), [["NAME", "SIZE", "ORIGIN", "ALLOCATED", "CREATED"]]);
    succeeded(await atoll([...at, "cluster", "status"], { ATOLL_TOKEN: token }));

    const file = join(dir, "small.raw");
    await Deno.writeFile(file, new Uint8Array(MiB).fill(7));
    failed(
      await atoll([...at, "image", "upload", file, "small"]),
      1,
      /Cannot upload image "small"/,
    );
    succeeded(await atoll([...at, "--token-file", tokenFile, "image", "upload", file, "small"]));
    failed(
      await atoll([...at, "--token-file", join(dir, "missing"), "image", "ls"]),
      1,
      /^atoll: Cannot read token file .*missing: no such file$/,
    );
  } finally {
    await node.stop();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unreachable node gives exit 1 and one line", async () => {
  // A port that was free a moment ago and that nothing listens on now.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  failed(
    await atoll(["--node", `http://127.0.0.1:${port}`, "image", "ls"]),
    1,
    new RegExp(`^atoll: Cannot reach node at http://127\\.0\\.0\\.1:${port}: .*refused`),
  );
});

Deno.test({
  name: "image upload draws a progress bar in place on a terminal",
  // `script` (util-linux) gives the CLI a pseudo-terminal; BSD script takes other flags.
  ignore: Deno.build.os !== "linux",
  async fn() {
    const node = await startNode();
    const dir = await Deno.makeTempDir({ prefix: "atoll-cli-" });
    try {
      const file = await writeImage(dir);
      const quote = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;
      const command = [Deno.execPath(), "run", "-A", "main.ts", "--node", node.url, "image"]
        .concat(["upload", file, "debian"]).map(quote).join(" ");
      const output = await new Deno.Command("script", {
        args: ["-qfec", command, "/dev/null"],
        cwd: root,
        env: { ATOLL_NODE: "", ATOLL_TOKEN: "", NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(output.stdout);
      assert.equal(output.code, 0, text + new TextDecoder().decode(output.stderr));
      const frames = text.split("\r").filter((frame) => /\[[#.]+\] +\d+% /.test(frame));
      assert.ok(frames.length >= 1, JSON.stringify(text));
      assert.ok(frames.every((frame) => frame.endsWith("\x1b[K") && !frame.includes("\n")));
      assert.match(frames[0], /^debian \[[#.]+\] +\d+% +[\d.]+ [KMG]?i?B\/13\.0 MiB /);
      // The bar is erased before the summary, which is the only line left.
      const erased = text.lastIndexOf("\r\x1b[K");
      assert.match(
        text.slice(erased + 4),
        /^Uploaded image "debian": 13\.0 MiB in .*dedup 33%\r?\n$/,
      );
    } finally {
      await node.stop();
      await removeData(node);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("atoll serve --help prints the node's flags and exits 0", async () => {
  const lines = succeeded(await atoll(["serve", "--help"]));
  assert.match(lines.join("\n"), /atoll serve \[--data DIR\]/);
  assert.ok(lines.some((line) => line.includes("--read-cache-mib")));
  assert.ok(!lines.some((line) => line.includes("atoll image upload")), "only serve's flags");
});

Deno.test("a subcommand's --help prints its own usage, a group's its commands", async () => {
  const create = succeeded(await atoll(["volume", "create", "--help"]));
  assert.deepEqual(create, [
    "usage: atoll volume create NAME (--image I | --snapshot V@S) [--size N] | NAME --size N; " +
    "limits: [--iops[-read|-write] N[:BURST]] [--bps[-read|-write] SIZE[:BURST]]",
  ]);
  const group = succeeded(await atoll(["snapshot", "--help"]));
  assert.ok(
    group.every((line) => line === "usage:" || line.includes("atoll snapshot")),
    group.join("\n"),
  );
});
