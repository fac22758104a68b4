/** Which node the client talks to and with which token: options, environment, defaults. */
import { UsageError, type Values } from "./_command_line.ts";

/** Node contacted when neither `--node` nor `ATOLL_NODE` says otherwise. */
export const nodeUrlDefault = "http://127.0.0.1:8080";

/** `--node`, else `ATOLL_NODE`, else the default; `http://` is implied when no scheme is given. */
export function nodeUrl(values: Values): string {
  const given = values.node ?? env("ATOLL_NODE") ?? nodeUrlDefault;
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? given : `http://${given}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`node address ${JSON.stringify(given)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`node address ${JSON.stringify(given)} is not an http(s) URL`);
  }
  return url.href.replace(/\/+$/, "");
}

/** The token from `--token-file`, else from `ATOLL_TOKEN`, else none. */
export async function token(values: Values): Promise<string | null> {
  const path = values["token-file"];
  if (path === undefined) return env("ATOLL_TOKEN")?.trim() || null;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (cause) {
    throw new Error(`Cannot read token file ${path}: ${fileErrorText(cause)}`, { cause });
  }
  if (text.trim() === "") throw new Error(`Cannot use token file ${path}: it is empty`);
  return text.trim();
}

/** A file system error without Deno's trailing syscall and path. */
export function fileErrorText(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // No --allow-env: behave as if unset.
  }
}
