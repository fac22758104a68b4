import assert from "node:assert/strict";
import { join } from "node:path";
import { UsageError } from "./_command_line.ts";
import { envName, serveFlags } from "./serve_flags.ts";
import { resolveServeSettings, serveHelp } from "./serve_settings.ts";

async function withConfig(text: string, body: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-config-" });
  try {
    const path = join(dir, "atoll.toml");
    await Deno.writeTextFile(path, text);
    await body(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function settingsOf(args: string[], env: Record<string, string> = {}) {
  const resolved = await resolveServeSettings({ args, env });
  assert.ok(resolved !== null);
  return resolved;
}

/** Asserts that resolving fails with a UsageError whose message is exactly `message`. */
async function refused(args: string[], env: Record<string, string>, message: string) {
  await assert.rejects(resolveServeSettings({ args, env }), (error: unknown) => {
    assert.ok(error instanceof UsageError, String(error));
    assert.equal(error.message, message);
    return true;
  });
}

Deno.test("resolveServeSettings() gives every default when no source sets anything", async () => {
  const { settings, warnings } = await settingsOf([]);
  const defaults = Object.fromEntries(
    Object.entries(serveFlags).map(([name, flag]) => [name, flag.default]),
  );
  assert.deepEqual(settings, defaults);
  assert.deepEqual(warnings, []);
  assert.equal(settings.data, "./atoll-data");
  assert.deepEqual(settings.join, []);
});

Deno.test("resolveServeSettings() takes flags over environment over file over defaults", async () => {
  const config = `data = "/srv/file"\nzone = "file"\nreplicas = 2\nweight = 2.5\n` +
    `join = ["10.0.0.1:7946", "10.0.0.2:7946"]\n`;
  await withConfig(config, async (path) => {
    const env = { ATOLL_ZONE: "env", ATOLL_REPLICAS: "4", ATOLL_LOG_LEVEL: "debug" };
    const { settings } = await settingsOf(["--config", path, "--zone", "flag"], env);
    assert.equal(settings.zone, "flag");
    assert.equal(settings.replicas, 4);
    assert.equal(settings["log-level"], "debug");
    assert.equal(settings.data, "/srv/file");
    assert.equal(settings.weight, 2.5);
    assert.deepEqual(settings.join, ["10.0.0.1:7946", "10.0.0.2:7946"]);
    assert.equal(settings["dead-grace"], 60);
    // ATOLL_CONFIG names the file when --config does not.
    const fromEnv = await settingsOf([], { ATOLL_CONFIG: path });
    assert.equal(fromEnv.settings.zone, "file");
    const flagWins = await settingsOf(["--config", path], { ATOLL_CONFIG: "/nonexistent" });
    assert.equal(flagWins.settings.zone, "file");
  });
});

Deno.test("resolveServeSettings() reads lists and numbers from the environment", async () => {
  const env = { ATOLL_JOIN: "10.0.0.1:7946, 10.0.0.2:7946", ATOLL_GC_MIN_AGE: "0.5" };
  const { settings } = await settingsOf([], { ...env, ATOLL_ZONE: "" });
  assert.deepEqual(settings.join, ["10.0.0.1:7946", "10.0.0.2:7946"]);
  assert.equal(settings["gc-min-age"], 0.5);
  assert.equal(settings.zone, null, "an empty variable is unset");
});

Deno.test("resolveServeSettings() names the key and the file of a bad config file", async () => {
  await withConfig(`dat = "/srv"\n`, async (path) => {
    await refused(
      ["--config", path],
      {},
      `Cannot use config file ${path}: unknown key "dat" (the keys are serve's flags: ` +
        `${Object.keys(serveFlags).join(", ")})`,
    );
  });
  await withConfig(`token_file = "/etc/atoll/token"\n`, async (path) => {
    await refused(
      ["--config", path],
      {},
      `Cannot use config file ${path}: unknown key "token_file" (did you mean "token-file"?)`,
    );
  });
  await withConfig(`replicas = "3"\n`, async (path) => {
    await refused(
      ["--config", path],
      {},
      `Cannot use replicas = "3" in config file ${path}: expected a number`,
    );
  });
  await withConfig(`join = "10.0.0.1:7946"\n`, async (path) => {
    await refused(
      ["--config", path],
      {},
      `Cannot use join = "10.0.0.1:7946" in config file ${path}: expected a list of strings`,
    );
  });
  await withConfig(`replicas = 12\n`, async (path) => {
    await refused(
      ["--config", path],
      {},
      `Cannot use replicas = 12 in config file ${path}: expected a whole number in [1, 9]`,
    );
  });
  await withConfig(`data = \n`, async (path) => {
    await refused(
      ["--config", path],
      {},
      `Cannot read config file ${path}: invalid value (line 1, column 8)`,
    );
  });
  await refused(
    ["--config", "/nonexistent/atoll.toml"],
    {},
    "Cannot read config file /nonexistent/atoll.toml: no such file",
  );
});

Deno.test("resolveServeSettings() names the flag or variable of a bad value", async () => {
  await refused(
    ["--replicas", "12"],
    {},
    "Cannot use --replicas 12: expected a whole number in [1, 9]",
  );
  await refused([], { ATOLL_WEIGHT: "heavy" }, "Cannot use ATOLL_WEIGHT=heavy: expected a number");
  await refused([], { ATOLL_HTTP: "8080" }, "Cannot use ATOLL_HTTP=8080: expected HOST:PORT");
  await refused(
    ["--log-format", "xml"],
    {},
    "Cannot use --log-format xml: expected text or json",
  );
  await refused([], { ATOLL_JOIN: "a:1,b" }, "Cannot use ATOLL_JOIN=a:1,b: expected HOST:PORT");
  await refused(["--bogus"], {}, "unknown option --bogus (see atoll serve --help)");
  await refused(["--data"], {}, "option --data needs a value");
});

Deno.test("resolveServeSettings() warns of an ATOLL_ variable that names no option", async () => {
  const { warnings } = await settingsOf([], { ATOLL_DAT: "/srv", ATOLL_NODE: "x", PATH: "/bin" });
  assert.deepEqual(warnings, [
    "environment variable ATOLL_DAT names no serve option; ignored",
  ]);
});

Deno.test("resolveServeSettings() is null for --help, which lists every option", async () => {
  assert.equal(await resolveServeSettings({ args: ["--help"], env: {} }), null);
  const help = serveHelp();
  for (const name of Object.keys(serveFlags)) assert.match(help, new RegExp(`  --${name} `));
  assert.ok(help.split("\n").every((line) => line.length <= 100), help);
  assert.equal(envName("token-file"), "ATOLL_TOKEN_FILE");
});

Deno.test("docs/operations.md lists every serve option with its variable, and no other", async () => {
  const docs = await Deno.readTextFile(new URL("../docs/operations.md", import.meta.url));
  const rows = [...docs.matchAll(/^\| `([a-z-]+)` +\| `(ATOLL_[A-Z_]+)` +\|/gm)];
  assert.deepEqual(rows.map((row) => row[1]), Object.keys(serveFlags));
  assert.ok(rows.every(([, name, variable]) => envName(name) === variable));
});
