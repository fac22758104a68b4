/**
 * The web dashboard (`GET /` and its files under `/ui/`, served without a
 * token: the page holds no data) and the two JSON routes it reads besides the
 * usual ones, under /v1 and so behind the token: `GET /v1/stats` (every
 * member's capacity, load and per-volume I/O counters) and `GET /v1/events`
 * (the node's recent events).
 */
import { Hono } from "hono";
import { dashboardFiles, dashboardPage } from "../dashboard/mod.ts";
import { recentEvents } from "../log/mod.ts";
import { nodeStats } from "../metrics/mod.ts";
import type { AppEnv, AppOptions } from "./app.ts";

/** The page and its files. */
export function dashboardRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", (c) => c.body(dashboardPage.body, 200, headersOf(dashboardPage.contentType)));
  app.get("/ui/:file", (c) => {
    const file = dashboardFiles.get(c.req.param("file"));
    if (file === undefined) {
      return c.json({ error: `Cannot GET ${c.req.path}: no such dashboard file` }, 404);
    }
    return c.body(file.body, 200, headersOf(file.contentType));
  });
  return app;
}

/** `GET /stats` and `GET /events`, under /v1. */
export function statsRoutes(options: AppOptions): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/stats", async (c) => {
    const members = options.memberStats === undefined
      ? [{ id: options.members()[0]?.id ?? "", stats: await nodeStats() }]
      : await options.memberStats();
    return c.json({ members });
  });
  app.get("/events", (c) => {
    const text = c.req.query("after") ?? "0";
    const after = Number(text);
    if (!Number.isSafeInteger(after) || after < 0) {
      throw new TypeError(
        `Cannot list events after ${JSON.stringify(text)}: expected a whole number`,
      );
    }
    return c.json({ events: recentEvents.after(after) });
  });
  return app;
}

function headersOf(contentType: string): Record<string, string> {
  // The files change only with the program: a browser may keep them while the node runs,
  // but asks again after a restart (an upgrade) because the page itself is not cached.
  return { "content-type": contentType, "cache-control": "no-cache" };
}
