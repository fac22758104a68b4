/**
 * The changes of a volume, for incremental backups (core/changes.ts):
 * `GET /v1/volumes/{name}/changes?since=SNAP[&until=SNAP2]` lists the byte
 * extents changed since its snapshot SNAP, up to its snapshot SNAP2 or to the
 * live volume, at the granularity of the map's block (4 MiB by default).
 */
import { Hono } from "hono";
import type { Store } from "../core/mod.ts";
import type { AppEnv } from "./app.ts";

/** The changes route, under /v1. */
export function changeRoutes(store: Store): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/volumes/:name/changes", async (c) => {
    const name = c.req.param("name");
    const since = c.req.query("since");
    if (since === undefined) {
      throw new TypeError(
        `Cannot list the changes of volume "${name}": give since=SNAPSHOT (and until=SNAPSHOT)`,
      );
    }
    return c.json(await store.listChanges(name, { since, until: c.req.query("until") }));
  });
  return app;
}
