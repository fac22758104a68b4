/**
 * Test harness: runs a real `atoll serve` process on loopback with its own data
 * directory, and knows its HTTP address. Every test that uses one stops it.
 */
const root = new URL("../", import.meta.url).pathname;

/** Options of {@linkcode startNode}. */
export interface StartOptions {
  /** Reuse a data directory (a restart); a fresh temporary one otherwise. */
  data?: string;
  /** Extra `serve` flags. */
  args?: string[];
  /** Run this entry instead of main.ts (e.g. the bundled dist/atoll.js). */
  entry?: string;
  /** Run this `atoll` executable (a binary, an installed wrapper) instead of `deno run`. */
  program?: string;
  /** Working directory of the process (default: the project root). */
  cwd?: string;
  /** NBD listen address (default a free loopback port). */
  nbd?: string;
  /** Extra environment variables of the process (e.g. LD_PRELOAD of libfaketime). */
  env?: Record<string, string>;
  /** The open-files limit (soft and hard) to start the node under, as `ulimit -n` sets it. */
  filesLimit?: number;
  /**
   * Give no `--data`, `--http` or `--nbd`: the node takes them from its config
   * file or environment (`data` then only says where the test will find them).
   */
  bare?: boolean;
}

/**
 * Flags every {@linkcode startNode} of this test file adds, from the node's
 * data directory: how a test file runs shared cases on another engine
 * (tests/rados_nbd_clients_test.ts). Module state is per test file.
 */
let engineArgs: ((data: string) => Promise<string[]>) | null = null;

/** Makes every node this test file starts run with `args(data)` added (see engineArgs). */
export function useEngineArgs(args: (data: string) => Promise<string[]>): void {
  engineArgs = args;
}

/** A running node process. */
export class TestNode {
  constructor(
    readonly process: Deno.ChildProcess,
    readonly data: string,
    readonly url: string,
    /** `nbd://127.0.0.1:PORT` or `unix:PATH`. */
    readonly nbd: string,
    /** The cluster address (HOST:PORT) when the node runs with --gossip. */
    readonly gossip: string | null,
    readonly log: string[],
  ) {}

  /** The NBD URI of an export, for qemu-img, nbdinfo and friends. */
  nbdUri(exportName: string): string {
    if (this.nbd.startsWith("unix:")) {
      return `nbd+unix:///${exportName}?socket=${this.nbd.slice("unix:".length)}`;
    }
    return `${this.nbd}/${exportName}`;
  }

  /** The NBD port (TCP listeners only). */
  get nbdPort(): number {
    return Number(new URL(this.nbd.replace("nbd:", "http:")).port);
  }

  /** fetch() relative to the node's URL. */
  fetch(path: string, init?: RequestInit): Promise<Response> {
    return fetch(this.url + path, init);
  }

  /** SIGKILLs the node (no flush, no cleanup) and waits for it to be gone. */
  async kill9(): Promise<void> {
    try {
      this.process.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.process.status;
  }

  /** SIGTERMs the node and waits for a clean exit. */
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.process.kill("SIGTERM");
    } catch { /* already gone */ }
    return await this.process.status;
  }
}

/** Starts a node on a free loopback port and waits until it serves. */
export async function startNode(options: StartOptions = {}): Promise<TestNode> {
  const data = options.data ?? await Deno.makeTempDir({ prefix: "atoll-test-" });
  const entry = options.entry ?? `${root}main.ts`;
  const args = [
    // As `deno task start` and packaging/atoll.sh run a node
    // (docs/decisions.md, "V8 without its memory reducer").
    ...(options.program === undefined
      ? ["run", "--allow-all", "--v8-flags=--no-memory-reducer", entry]
      : []),
    "serve",
    ...(options.bare
      ? []
      : ["--data", data, "--http", "127.0.0.1:0", "--nbd", options.nbd ?? "127.0.0.1:0"]),
    ...(engineArgs === null ? [] : await engineArgs(data)),
    ...(options.args ?? []),
  ];
  // bash sets the limit, then becomes deno (exec): signals reach the node itself.
  const program = options.program ?? Deno.execPath();
  const limited = options.filesLimit === undefined
    ? null
    : ["-c", `ulimit -n ${options.filesLimit} && exec "$0" "$@"`, program];
  const process = new Deno.Command(limited === null ? program : "bash", {
    args: limited === null ? args : [...limited, ...args],
    stdout: "null",
    stderr: "piped",
    cwd: options.cwd ?? root,
    env: options.env,
  }).spawn();
  const log: string[] = [];
  const lines = process.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const urls = await new Promise<{ http: string; nbd: string; gossip: string | null }>(
    (resolve, reject) => {
      (async () => {
        for (;;) {
          const { value, done } = await lines.read();
          if (done) break;
          buffered += value;
          let newline;
          while ((newline = buffered.indexOf("\n")) >= 0) {
            const line = buffered.slice(0, newline);
            buffered = buffered.slice(newline + 1);
            log.push(line);
            const match = line.match(/serving (http:\/\/[0-9.]+:\d+) nbd (\S+)(?: gossip (\S+))?/);
            if (match) resolve({ http: match[1], nbd: match[2], gossip: match[3] ?? null });
          }
        }
        reject(new Error(`node exited before serving:\n${log.join("\n")}`));
      })().catch(reject);
    },
  );
  return new TestNode(process, data, urls.http, urls.nbd, urls.gossip, log);
}

/** Removes a node's data directory. */
export async function removeData(node: TestNode): Promise<void> {
  await Deno.remove(node.data, { recursive: true }).catch(() => {});
}
