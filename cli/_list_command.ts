/** The one shape of the `ls` subcommands: fetch, sort by name, print a table or the JSON. */
import type { AtollClient } from "./client.ts";
import { sortByName, table, toJson } from "./format.ts";
import type { CommandSpec } from "./_command_line.ts";

/** How an `ls` command lists: what it fetches and how one item reads as a table row. */
export interface ListSpec<T extends { name: string }> {
  operands: string[];
  fetch: (client: AtollClient, operands: string[]) => Promise<T[]>;
  headers: string[];
  row: (item: T) => string[];
  /** Columns aligned right (numbers). */
  right?: number[];
}

/** A command that prints what `fetch` returns, by name: a table, or with `--json` the JSON. */
export function listCommand<T extends { name: string }>(spec: ListSpec<T>): CommandSpec {
  return {
    operands: spec.operands,
    run: async ({ client, values, print }, operands) => {
      const items = sortByName(await spec.fetch(client, operands));
      if (values.json) return print(toJson(items));
      print(table(spec.headers, items.map(spec.row), spec.right));
    },
  };
}
