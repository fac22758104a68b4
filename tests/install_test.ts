/**
 * Goal: the ways docs/operations.md gives to install Atoll work as written:
 * the bundle behind packaging/atoll.sh or `deno install`, run as `atoll`; the
 * systemd unit (packaging/atoll.service) verifies and keeps its hardening;
 * the sysusers file makes the service's user; the example config is valid.
 * Method: bundle main.ts, lay it out under a temporary root as the docs say,
 * start a node through the wrapper the way the unit does (`atoll serve
 * --config FILE`), and run systemd's own checkers (`systemd-analyze verify`,
 * `systemd-analyze security --offline`, `systemd-sysusers --root`) on the
 * files, the unit pointed at that wrapper since verify needs its ExecStart.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { run } from "./_files.ts";
import { startNode } from "./_node.ts";
import { resolveServeSettings } from "../cli/serve_settings.ts";
import { version } from "../cli/version.ts";

const root = new URL("../", import.meta.url).pathname;
const packaging = join(root, "packaging");
/** How every way of running a node turns V8's memory reducer off (docs/decisions.md). */
const noMemoryReducer = "--v8-flags=--no-memory-reducer";

async function output(command: string, args: string[], env: Record<string, string> = {}) {
  const result = await new Deno.Command(command, { args, env, stdin: "null" }).output();
  const decoder = new TextDecoder();
  const text = { stdout: decoder.decode(result.stdout), stderr: decoder.decode(result.stderr) };
  return { code: result.code, ...text };
}

async function withInstallRoot(body: (dir: string, wrapper: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "atoll-install-" });
  try {
    // As docs/operations.md says: the bundle in lib/atoll, the wrapper as bin/atoll.
    const bundle = join(dir, "usr/local/lib/atoll/atoll.js");
    await run(Deno.execPath(), ["bundle", "--quiet", "--output", bundle, `${root}main.ts`]);
    const wrapper = join(dir, "usr/local/bin/atoll");
    await Deno.mkdir(join(dir, "usr/local/bin"), { recursive: true });
    // The wrapper's paths point into the temporary root instead of /usr/local.
    const script = (await Deno.readTextFile(join(packaging, "atoll.sh")))
      .replaceAll("/usr/local/lib/atoll/atoll.js", bundle)
      .replace('"${DENO:-deno}"', `"\${DENO:-${Deno.execPath()}}"`);
    await Deno.writeTextFile(wrapper, script, { mode: 0o755 });
    await body(dir, wrapper);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the bundle runs as atoll through the wrapper and through deno install", async () => {
  await withInstallRoot(async (dir, wrapper) => {
    const shown = await output(wrapper, ["version"]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^atoll ${version}\ndeno ${Deno.version.deno} `));
    // The unit's command line, with a config file, through the wrapper.
    const data = join(dir, "var/lib/atoll");
    const config = join(dir, "atoll.toml");
    await Deno.writeTextFile(
      config,
      `data = "${data}"\nhttp = "127.0.0.1:0"\nnbd = "127.0.0.1:0"\n`,
    );
    const node = await startNode({
      program: wrapper,
      bare: true,
      data,
      args: ["--config", config],
    });
    try {
      const health = await (await node.fetch("/healthz")).json();
      assert.deepEqual(health, { status: "ok", version });
      // The wrapper becomes the node (exec), which runs with V8's memory reducer off.
      const command = (await Deno.readTextFile(`/proc/${node.process.pid}/cmdline`)).split("\0");
      assert.ok(command.includes(noMemoryReducer), command.join(" "));
    } finally {
      assert.equal((await node.stop()).code, 0, "SIGTERM reaches the node through the wrapper");
    }
    const installed = join(dir, "deno-root");
    const install = await new Deno.Command(Deno.execPath(), {
      args: [
        "install",
        "-g",
        "-A",
        noMemoryReducer,
        "-n",
        "atoll",
        "--root",
        installed,
        `${dir}/usr/local/lib/atoll/atoll.js`,
      ],
      cwd: dir,
      stdin: "null",
    }).output();
    assert.ok(install.success, new TextDecoder().decode(install.stderr));
    const viaInstall = await output(join(installed, "bin/atoll"), ["--version"]);
    assert.equal(viaInstall.code, 0, viaInstall.stderr);
    assert.equal(viaInstall.stdout.split("\n")[0], `atoll ${version}`);
    assert.match(
      await Deno.readTextFile(join(installed, "bin/atoll")),
      /--v8-flags=--no-memory-reducer/,
    );
  });
});

Deno.test("the systemd unit verifies with its documented ExecStart and keeps its hardening", async () => {
  await withInstallRoot(async (dir, wrapper) => {
    const unit = await Deno.readTextFile(join(packaging, "atoll.service"));
    const execStart = "ExecStart=/usr/local/bin/atoll serve --config /etc/atoll/atoll.toml";
    assert.ok(unit.split("\n").includes(execStart), "the documented install path");
    for (const line of ["User=atoll", "LimitNOFILE=1048576", "Restart=on-failure"]) {
      assert.ok(unit.split("\n").includes(line), line);
    }
    // verify needs ExecStart's program to exist: the wrapper stands in for /usr/local/bin/atoll.
    const copy = join(dir, "atoll.service");
    await Deno.writeTextFile(
      copy,
      unit.replace(execStart, execStart.replace("/usr/local/bin/atoll", wrapper)),
    );
    const verify = await output("systemd-analyze", ["verify", copy]);
    assert.equal(verify.stderr, "", "no warning: every directive is known and well formed");
    assert.equal(verify.code, 0);
    // Exposure 2.0 or less on systemd's scale of 0 (locked down) to 10: "OK".
    const security = await output("systemd-analyze", [
      "security",
      "--offline=yes",
      "--threshold=20",
      copy,
    ]);
    assert.equal(
      security.code,
      0,
      security.stdout.split("\n").filter((l) => l.includes("✗")).join("\n"),
    );
    assert.match(security.stdout, /Overall exposure level for atoll\.service: [0-2]\.\d OK/);
    // A broken directive is what verify reports (the check can fail).
    await Deno.writeTextFile(
      copy,
      unit.replace(execStart, `ExecStart=${wrapper} serve`).replace(
        "LimitNOFILE=1048576",
        "LimitNOFILE=lots",
      ),
    );
    assert.match((await output("systemd-analyze", ["verify", copy])).stderr, /lots/);
  });
});

Deno.test("the node's tasks run it with V8's memory reducer off, as the wrapper does", async () => {
  const { tasks } = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));
  for (const task of ["start", "compile"]) {
    assert.ok(tasks[task].split(" ").includes(noMemoryReducer), `${task}: ${tasks[task]}`);
  }
});

Deno.test("the sysusers file makes the atoll user; the example config is valid", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-sysusers-" });
  try {
    await Deno.mkdir(join(dir, "etc"));
    const made = await output("systemd-sysusers", [
      `--root=${dir}`,
      join(packaging, "atoll.sysusers"),
    ]);
    assert.equal(made.code, 0, made.stderr);
    const passwd = await Deno.readTextFile(join(dir, "etc/passwd"));
    assert.match(
      passwd,
      /^atoll:x:\d+:\d+:Atoll storage node:\/var\/lib\/atoll:\/usr\/sbin\/nologin$/m,
    );
    assert.match(await Deno.readTextFile(join(dir, "etc/group")), /^atoll:x:\d+:$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const example = join(packaging, "atoll.toml");
  const resolved = await resolveServeSettings({ args: ["--config", example], env: {} });
  assert.equal(resolved?.settings.data, "/var/lib/atoll");
  assert.equal(resolved?.settings["log-format"], "json");
});
