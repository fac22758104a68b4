/**
 * Goal: the allowed imports between folders (docs/architecture.md) hold, so a
 * reader finds one concern in one folder and the layers stay layers. Method:
 * every import of every production file (tests excluded) is resolved to a
 * folder and checked against the table; cross-folder imports into `cluster/`
 * subfolders must go through their `mod.ts`.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";

const root = normalize(new URL("../", import.meta.url).pathname);

/** Folder → folders its production code may import (besides itself). */
const allowed: Record<string, string[]> = {
  "cli": [
    "core",
    "http",
    "nbd",
    "wasm",
    "cluster",
    "cluster/membership",
    "cluster/meta",
    "cluster/data",
    "cluster/leases",
    "cluster/repair",
    "cluster/transport",
    "log",
    "metrics",
    "net",
    "rados",
  ],
  "http": ["core", "backup", "dashboard", "log", "metrics"],
  "backup": ["core", "wasm", "log", "metrics"],
  "rados": ["core", "log", "metrics"],
  "nbd": ["core", "log", "metrics", "net"],
  "net": ["core", "log", "metrics"],
  "core": ["wasm", "log", "metrics"],
  "wasm": ["log", "metrics"],
  "cluster": [
    "core",
    "cluster/membership",
    "cluster/placement",
    "cluster/transport",
    "cluster/meta",
    "cluster/data",
    "log",
    "metrics",
  ],
  "cluster/membership": ["core", "log", "metrics"],
  "cluster/placement": ["core", "log", "metrics"],
  "cluster/transport": ["core", "cluster/membership", "log", "metrics", "net"],
  "cluster/meta": ["core", "cluster/transport", "log", "metrics"],
  "cluster/data": ["core", "cluster/transport", "log", "metrics"],
  "cluster/leases": ["core", "cluster/transport", "cluster/meta", "cluster", "log", "metrics"],
  "cluster/repair": ["core", "cluster/transport", "cluster/data", "cluster", "log", "metrics"],
  "cluster/sim": [
    "core",
    "wasm",
    "cluster",
    "cluster/membership",
    "cluster/meta",
    "cluster/data",
    "cluster/leases",
    "cluster/repair",
    "cluster/transport",
    "log",
    "metrics",
  ],
  "log": [],
  "metrics": [],
  // The page's own browser files, imported as text.
  "dashboard": ["dashboard/ui"],
};

function* productionFiles(dir: string): Generator<string> {
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* productionFiles(path);
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
      if (!entry.name.startsWith("_test")) yield path;
    }
  }
}

Deno.test("imports between folders follow docs/architecture.md", () => {
  const violations: string[] = [];
  for (const folder of Object.keys(allowed)) {
    for (const file of productionFiles(join(root, folder))) {
      const from = relative(root, dirname(file));
      if (from !== folder) continue; // a subfolder is checked as its own folder
      const source = Deno.readTextFileSync(file);
      const imports = /^(?:import|export)\b[^;]*?\bfrom\s*"(\.{1,2}\/[^"]+)"/gms;
      for (const match of source.matchAll(imports)) {
        const target = normalize(join(dirname(file), match[1]));
        const to = relative(root, dirname(target));
        if (to === from) continue;
        const name = relative(root, file);
        if (!allowed[from].includes(to)) violations.push(`${name} imports ${match[1]} (${to})`);
        if (to === "metrics" && !target.endsWith("/mod.ts")) {
          violations.push(`${name} imports ${match[1]}, not metrics/mod.ts`);
        }
        const intoClusterPart = to.startsWith("cluster/") && !from.startsWith(`${to}`);
        if (intoClusterPart && !target.endsWith("/mod.ts")) {
          violations.push(`${name} imports ${match[1]}, not its folder's mod.ts`);
        }
      }
    }
  }
  assert.deepEqual(violations, []);
});
