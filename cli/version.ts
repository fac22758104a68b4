/**
 * The version of Atoll, kept here alone: the command line, the start line, the
 * HTTP API's `/healthz` and the bundle and binary all read it from this file
 * (a constant, so that `deno bundle` and `deno compile` carry it with no file
 * to find at run time).
 */

/** Version of this build. */
export const version = "0.1.0";

/**
 * What `atoll version` prints: Atoll's version and that of the Deno runtime
 * running it (with a compiled binary, the `denort` built into it).
 */
export function versionText(): string {
  const { deno, v8, typescript } = Deno.version;
  return `atoll ${version}\ndeno ${deno} (v8 ${v8}, typescript ${typescript})`;
}
