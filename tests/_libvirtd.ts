/**
 * Test harness: a real libvirtd of its own (Debian's), the QEMU driver in session
 * mode, run as an unprivileged user with every directory it uses (configuration,
 * runtime, cache) in a temporary directory, so a test neither needs nor touches
 * the host's system libvirt. QEMU logs go to files (stdio_handler "file"), so no
 * virtlogd is spawned. Every test that starts one stops it, and with it any QEMU
 * it left running.
 */
const libvirtUid = 65534; // nobody: libvirtd run by root would be the system instance
const driverModule = "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so";
const tools = ["libvirtd", "virsh", "virt-xml-validate", "xmllint", "setpriv"];

/** Throws naming the missing tools and how to install them. */
export function requireLibvirtTools(): void {
  const missing = tools.filter((tool) =>
    !["/usr/sbin", "/usr/bin", "/sbin", "/bin"].some((dir) => exists(`${dir}/${tool}`))
  );
  if (!exists(driverModule)) missing.push("libvirt's QEMU driver");
  if (missing.length > 0) {
    throw new Error(
      `the libvirt tests need ${missing.join(", ")}: run bash tests/install_tools.sh ` +
        "(Debian libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients, libxml2-utils)",
    );
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A running libvirtd and the directories it owns. */
export class Libvirtd {
  private constructor(
    readonly dir: string,
    private readonly process: Deno.ChildProcess,
    private readonly env: Record<string, string>,
    readonly log: string[],
  ) {}

  /** A directory the daemon's QEMU (running as the same user) may write, e.g. for a serial log. */
  get outputDir(): string {
    return `${this.dir}/out`;
  }

  /** Starts libvirtd and waits for its socket. */
  static async start(): Promise<Libvirtd> {
    requireLibvirtTools();
    const dir = await Deno.makeTempDir({ prefix: "atoll-libvirt-" });
    for (const sub of ["home", "config/libvirt", "runtime", "cache", "out"]) {
      await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
    }
    await Deno.writeTextFile(`${dir}/config/libvirt/qemu.conf`, 'stdio_handler = "file"\n');
    await chownTree(dir, libvirtUid);
    await Deno.chmod(`${dir}/runtime`, 0o700);
    const env = {
      PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: `${dir}/home`,
      XDG_CONFIG_HOME: `${dir}/config`,
      XDG_RUNTIME_DIR: `${dir}/runtime`,
      XDG_CACHE_HOME: `${dir}/cache`,
    };
    const process = new Deno.Command("setpriv", {
      args: [...asLibvirtUser(), "libvirtd"],
      clearEnv: true,
      env,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log: string[] = [];
    const draining = (async () => {
      for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
        log.push(chunk);
      }
    })();
    const daemon = new Libvirtd(dir, process, env, log);
    const socket = `${dir}/runtime/libvirt/libvirt-sock`;
    let exited = false;
    process.status.then(() => exited = true);
    const deadline = Date.now() + 30_000;
    while (!exists(socket)) {
      if (exited || Date.now() > deadline) {
        await daemon.stop();
        await draining;
        throw new Error(`libvirtd did not start:\n${log.join("")}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return daemon;
  }

  /** Runs virsh against this daemon; returns stdout, throws with stderr on failure. */
  async virsh(...args: string[]): Promise<string> {
    const output = await new Deno.Command("setpriv", {
      args: [...asLibvirtUser(), "virsh", "--quiet", "-c", "qemu:///session", ...args],
      clearEnv: true,
      env: this.env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder();
    if (!output.success) {
      throw new Error(`virsh ${args.join(" ")} failed: ${text.decode(output.stderr)}`);
    }
    return text.decode(output.stdout);
  }

  /** Stops the daemon, then any QEMU it left running, and removes its directory. */
  async stop(): Promise<void> {
    try {
      this.process.kill("SIGTERM");
    } catch { /* already gone */ }
    await this.process.status;
    const runDir = `${this.dir}/runtime/libvirt/qemu/run`;
    for (const entry of exists(runDir) ? Deno.readDirSync(runDir) : []) {
      if (!entry.name.endsWith(".pid")) continue;
      const pid = Number(Deno.readTextFileSync(`${runDir}/${entry.name}`).trim());
      try {
        if (pid > 1) Deno.kill(pid, "SIGKILL");
      } catch { /* already gone */ }
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** setpriv arguments running a command as the unprivileged libvirt user. */
function asLibvirtUser(): string[] {
  return [`--reuid=${libvirtUid}`, `--regid=${libvirtUid}`, "--clear-groups"];
}

async function chownTree(path: string, uid: number): Promise<void> {
  await Deno.chown(path, uid, uid);
  if (!Deno.statSync(path).isDirectory) return;
  for (const entry of Deno.readDirSync(path)) await chownTree(`${path}/${entry.name}`, uid);
}
