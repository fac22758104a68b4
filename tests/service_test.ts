/**
 * Goal: `atoll serve` runs unattended from what a service manager gives it: a
 * config file, ATOLL_* variables, or both, with flags winning over the
 * environment and the environment over the file; a bad config file stops it
 * with one line naming the key and the file; `atoll version` says what runs.
 * Method: real `atoll serve` processes (startNode with no address flags) on
 * loopback, observed through their HTTP API (the zone each reports, whether a
 * token is required), their log lines (text or JSON) and their data directory.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { removeData, startNode, type TestNode } from "./_node.ts";
import { exec } from "./_nbd.ts";
import { version } from "../cli/version.ts";

const root = new URL("../", import.meta.url).pathname;
const token = "service-test-token-0123456789";

function atoll(args: string[], env: Record<string, string> = {}) {
  return exec(Deno.execPath(), ["run", "--allow-all", `${root}main.ts`, ...args], { env });
}

/** The zone the node reports for itself, and whether the token is needed to ask. */
async function zoneOf(node: TestNode, bearer: string | null): Promise<string | null> {
  const headers = bearer === null ? undefined : { authorization: `Bearer ${bearer}` };
  const response = await node.fetch("/v1/cluster", { headers });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body.members[0].zone;
}

function isJsonLine(line: string): boolean {
  try {
    return typeof JSON.parse(line).message === "string";
  } catch {
    return false;
  }
}

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-service-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("atoll version and --version print Atoll's version and the Deno running it", async () => {
  for (const args of [["version"], ["--version"]]) {
    const run = await atoll(args);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, "");
    const lines = run.stdout.trimEnd().split("\n");
    assert.equal(lines[0], `atoll ${version}`);
    assert.match(
      lines[1],
      new RegExp(`^deno ${Deno.version.deno} \\(v8 \\S+, typescript \\S+\\)$`),
    );
    assert.equal(lines.length, 2);
  }
  const extra = await atoll(["version", "now"]);
  assert.equal(extra.code, 2);
  assert.equal(extra.stderr, 'atoll: version takes no arguments, not "now"\n');
});

Deno.test("a node starts from a config file alone", async () => {
  await withDir(async (dir) => {
    const data = join(dir, "data");
    await Deno.writeTextFile(join(dir, "token"), token);
    const config = join(dir, "atoll.toml");
    await Deno.writeTextFile(
      config,
      `# a node configured by its file alone\ndata = "${data}"\nhttp = "127.0.0.1:0"\n` +
        `nbd = "127.0.0.1:0"\nzone = "rack-file"\ntoken-file = "${join(dir, "token")}"\n` +
        `log-format = "json"\nread-cache-mib = 64\njoin = []\n`,
    );
    const node = await startNode({ bare: true, data, args: ["--config", config] });
    try {
      assert.equal((await node.fetch("/v1/volumes")).status, 401, "the file's token-file holds");
      assert.equal(await zoneOf(node, token), "rack-file");
      assert.ok(node.log.every(isJsonLine), node.log.join("\n"));
      assert.ok((await Deno.stat(join(data, "node-id"))).isFile, "the file's data directory");
    } finally {
      assert.equal((await node.stop()).code, 0);
    }
  });
});

Deno.test("a node starts from ATOLL_* environment variables alone", async () => {
  await withDir(async (dir) => {
    const data = join(dir, "data");
    const env = {
      ATOLL_DATA: data,
      ATOLL_HTTP: "127.0.0.1:0",
      ATOLL_NBD: "127.0.0.1:0",
      ATOLL_ZONE: "rack-env",
      ATOLL_LOG_FORMAT: "json",
      ATOLL_HEADER_TIMEOUT: "5",
    };
    const node = await startNode({ bare: true, data, env });
    try {
      assert.equal(await zoneOf(node, null), "rack-env");
      assert.ok(node.log.every(isJsonLine), node.log.join("\n"));
      assert.ok((await Deno.stat(join(data, "node-id"))).isFile, "ATOLL_DATA's directory");
    } finally {
      assert.equal((await node.stop()).code, 0);
    }
  });
});

Deno.test("a flag wins over the environment, which wins over the config file", async () => {
  await withDir(async (dir) => {
    const data = join(dir, "data");
    const config = join(dir, "atoll.toml");
    await Deno.writeTextFile(
      config,
      `data = "${data}"\nhttp = "127.0.0.1:0"\nnbd = "127.0.0.1:0"\n` +
        `zone = "rack-file"\nlog-format = "text"\n`,
    );
    const env = { ATOLL_CONFIG: config, ATOLL_ZONE: "rack-env", ATOLL_LOG_FORMAT: "json" };
    const flagged = await startNode({ bare: true, data, env, args: ["--zone", "rack-flag"] });
    try {
      assert.equal(await zoneOf(flagged, null), "rack-flag");
      assert.ok(flagged.log.every(isJsonLine), "ATOLL_LOG_FORMAT over the file's text");
    } finally {
      assert.equal((await flagged.stop()).code, 0);
    }
    // Without the flag, the environment's zone; without that, the file's.
    const environment = await startNode({ bare: true, data, env });
    try {
      assert.equal(await zoneOf(environment, null), "rack-env");
    } finally {
      await environment.stop();
    }
    const file = await startNode({ bare: true, data, env: { ATOLL_CONFIG: config } });
    try {
      assert.equal(await zoneOf(file, null), "rack-file");
      assert.ok(!file.log.some(isJsonLine), "the file's text log");
    } finally {
      await file.stop();
      await removeData(file);
    }
  });
});

Deno.test("a config file with an unknown key or a wrongly typed value stops serve", async () => {
  await withDir(async (dir) => {
    const data = join(dir, "data");
    const config = join(dir, "atoll.toml");
    const cases: [string, RegExp][] = [
      [`dat = "${data}"\n`, /^atoll: Cannot use config file \S+: unknown key "dat" \(the keys/],
      [`data = "${data}"\nreplicas = "3"\n`, /^atoll: Cannot use replicas = "3" in config file /],
    ];
    for (const [text, message] of cases) {
      await Deno.writeTextFile(config, text);
      const run = await atoll(["serve", "--config", config]);
      assert.equal(run.code, 2, run.stderr);
      assert.equal(run.stdout, "");
      assert.equal(run.stderr.split("\n").length, 2, `one line: ${run.stderr}`);
      assert.match(run.stderr, message);
      assert.ok(run.stderr.includes(config), "names the file");
      await assert.rejects(Deno.stat(data), Deno.errors.NotFound, "nothing was created");
    }
  });
});
