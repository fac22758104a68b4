/**
 * Helpers of the NBD client tests: a node with a scratch directory that is
 * always cleaned up, the HTTP calls that set exports up, and runners for the
 * real clients (qemu-io, nbdsh's Python binding) that fail loudly.
 */
import assert from "node:assert/strict";
import { removeData, startNode, type StartOptions, type TestNode } from "./_node.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
/** The node's block size: whole never-written blocks are holes. */
export const blockBytes = 4 * MiB;

/**
 * The Python that has libnbd's binding. Debian's nbdsh starts `python3` from
 * PATH, which may be another interpreter without it, so the tests call the
 * system one directly.
 */
export const systemPython = "/usr/bin/python3";

/** What a finished command printed, and its exit code. */
export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (in `cwd`, with `env` added); never throws for a non-zero exit. */
export async function exec(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<Output> {
  const output = await new Deno.Command(command, {
    args,
    ...options,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return {
    code: output.code,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}

/** A running node plus a scratch directory, for {@linkcode withNode}. */
export interface Setup {
  node: TestNode;
  dir: string;
}

/**
 * Runs `body` against a fresh node and a scratch directory (`options` may
 * depend on it, e.g. a unix socket inside it); stops the node
 * (whichever one `setup.node` is at the end, after restarts) and removes both.
 * The node must not have logged a failed NBD request or connection.
 */
export async function withNode(
  body: (setup: Setup) => Promise<void>,
  options: StartOptions | ((dir: string) => StartOptions) = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-nbd-" });
  let setup: Setup;
  try {
    setup = { node: await startNode(typeof options === "function" ? options(dir) : options), dir };
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  try {
    await body(setup);
    assertQuietLog(setup.node);
  } finally {
    await setup.node.stop();
    await removeData(setup.node);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts the node logged no failed NBD request and no broken connection. */
export function assertQuietLog(node: TestNode): void {
  const failures = node.log.filter((line) => /atoll\.nbd: .*failed/.test(line));
  assert.deepEqual(failures, [], "the node logged NBD failures");
}

/** Sends JSON to the node's HTTP API and expects `status`; returns the body. */
export async function api(
  node: TestNode,
  path: string,
  body: unknown,
  status = 201,
): Promise<Record<string, unknown>> {
  const response = await node.fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.equal(response.status, status, `POST ${path}: ${text}`);
  return JSON.parse(text);
}

/** Creates a volume: `{size}` empty, `{image}` or `{snapshot}` a thin clone. */
export function createVolume(
  node: TestNode,
  name: string,
  from: { size: number } | { image: string } | { snapshot: string },
): Promise<Record<string, unknown>> {
  return api(node, "/v1/volumes", { name, ...from });
}

/** Takes the snapshot `volume@name`. */
export function createSnapshot(node: TestNode, volume: string, name: string) {
  return api(node, `/v1/volumes/${volume}/snapshots`, { name });
}

/** Uploads `bytes` as the image `name`. */
export async function uploadImage(node: TestNode, name: string, bytes: Uint8Array) {
  const response = await node.fetch(`/v1/images/${name}`, {
    method: "PUT",
    body: bytes as Uint8Array<ArrayBuffer>,
  });
  const text = await response.text();
  assert.equal(response.status, 201, `PUT image ${name}: ${text}`);
  return JSON.parse(text);
}

/** A volume's bytes read over HTTP: an independent path to check NBD writes. */
export async function volumeBytes(node: TestNode, name: string): Promise<Uint8Array> {
  const response = await node.fetch(`/v1/volumes/${name}/data`);
  assert.equal(response.status, 200, `GET ${name} data`);
  return new Uint8Array(await response.arrayBuffer());
}

/** qemu-io's arguments for `commands` on `uri`, as {@linkcode qemuIo} runs them. */
export function qemuIoArgs(uri: string, commands: string[]): string[] {
  return ["-t", "writeback", "-f", "raw", ...commands.flatMap((command) => ["-c", command]), uri];
}

/** Failure markers qemu-io prints while still exiting 0 in some versions. */
const qemuIoFailure = /error|failed|Pattern verification/i;

/**
 * Runs qemu-io commands on one open of `uri` (raw format). Asserts exit 0 and
 * that no command reported an error or a pattern mismatch; returns stdout.
 *
 * The cache mode is writeback: qemu-io's default (writethrough) sets FUA on every
 * write. So `write` is a plain NBD WRITE and `write -f` sets FUA; `write -z` is
 * WRITE_ZEROES with NO_HOLE, `-u` drops NO_HOLE (may trim), `-n` sets FAST_ZERO.
 */
export async function qemuIo(uri: string, commands: string[]): Promise<string> {
  const args = qemuIoArgs(uri, commands);
  const out = await exec("qemu-io", args);
  const all = out.stdout + out.stderr;
  assert.equal(out.code, 0, `qemu-io ${commands.join(" ; ")} exited ${out.code}:\n${all}`);
  assert.doesNotMatch(all, qemuIoFailure, `qemu-io ${commands.join(" ; ")}:\n${all}`);
  return out.stdout;
}

/**
 * Runs `script` under the Python that has libnbd (`import nbd` is prepended),
 * with `args` as sys.argv[1:]; the script prints one JSON value, returned here.
 * A Python exception fails the test with its traceback.
 */
export async function nbdPython(script: string, args: string[] = []): Promise<unknown> {
  const prelude = "import json, sys, nbd\n";
  const out = await exec(systemPython, ["-c", prelude + script, ...args]);
  assert.equal(out.code, 0, `python (libnbd) failed:\n${out.stderr}${out.stdout}`);
  return JSON.parse(out.stdout);
}

/** One extent as `nbdinfo --map --json` prints it. */
export interface MapExtent {
  offset: number;
  length: number;
  type: number;
  description: string;
}

/** `nbdinfo --map --json` of an export (base:allocation). */
export async function nbdinfoMap(uri: string): Promise<MapExtent[]> {
  const out = await exec("nbdinfo", ["--map", "--json", uri]);
  assert.equal(out.code, 0, `nbdinfo --map ${uri}: ${out.stderr}`);
  return JSON.parse(out.stdout);
}

/**
 * The extents a map should show when exactly `dataBlocks` (indexes of 4 MiB
 * blocks) hold data in an export of `sizeBytes`: runs of data, runs of holes.
 */
export function expectedMap(sizeBytes: number, dataBlocks: Set<number>): MapExtent[] {
  const extents: MapExtent[] = [];
  for (let offset = 0; offset < sizeBytes; offset += blockBytes) {
    const length = Math.min(blockBytes, sizeBytes - offset);
    const data = dataBlocks.has(offset / blockBytes);
    const last = extents.at(-1);
    if (last !== undefined && (last.type === 0) === data) {
      last.length += length;
    } else {
      extents.push(
        data
          ? { offset, length, type: 0, description: "data" }
          : { offset, length, type: 3, description: "hole,zero" },
      );
    }
  }
  return extents;
}

/** Fills `bytes[range]` with `value`, as qemu-io's `-P` pattern does. */
export function fill(bytes: Uint8Array, offset: number, length: number, value: number): void {
  bytes.fill(value, offset, offset + length);
}

/** A Python libnbd client that finished its work and still holds its connections. */
export interface HeldClient {
  /** The JSON value the script printed once its work was done. */
  result: unknown;
  /** Lets the script end (closing stdin) and waits for it. */
  release(): Promise<void>;
}

/**
 * Runs `script` like {@linkcode nbdPython}, but returns as soon as it printed its
 * JSON line, while it still holds its connections open: the script must then
 * wait with `sys.stdin.read()`. So a test can kill the node under a client that
 * never disconnected (a disconnect could make a server flush).
 */
export async function holdNbdPython(script: string, args: string[] = []): Promise<HeldClient> {
  const prelude = "import json, sys, nbd\n";
  const child = new Deno.Command(systemPython, {
    args: ["-c", prelude + script, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) break;
    text += value;
  }
  if (!text.includes("\n")) {
    const status = await child.status;
    throw new Error(`python (libnbd) exited ${status.code} early:\n${await stderr}${text}`);
  }
  const result = JSON.parse(text.slice(0, text.indexOf("\n")));
  return {
    result,
    async release() {
      await child.stdin.close();
      await lines.cancel();
      await child.status;
      await stderr;
    },
  };
}

/** SHA-256 (`bytes:hex`, as `bytesSha256`) of a whole export, read over NBD by libnbd. */
export async function nbdSha256(uri: string): Promise<string> {
  const script = `
import hashlib
h = nbd.NBD()
h.connect_uri(sys.argv[1])
size = h.get_size()
sha = hashlib.sha256()
at = 0
while at < size:
    n = min(32 * 1024 * 1024, size - at)
    sha.update(h.pread(n, at))
    at += n
h.shutdown()
print(json.dumps(f"{size}:{sha.hexdigest()}"))
`;
  return await nbdPython(script, [uri]) as string;
}
