/**
 * The web dashboard a node serves at `/`: a page and its scripts and style,
 * plain browser modules (no framework, nothing fetched from elsewhere)
 * imported here as text so that they are part of the module graph and travel
 * inside the bundle (`deno task bundle`) and the compiled binary. The page
 * reads the node's HTTP API like any client (docs/operations.md "Dashboard").
 *
 * This folder imports nothing of ours.
 *
 * @module
 */
import page from "./index.html" with { type: "text" };
import app from "./ui/app.js" with { type: "text" };
import columns from "./ui/columns.js" with { type: "text" };
import api from "./ui/api.js" with { type: "text" };
import format from "./ui/format.js" with { type: "text" };
import rates from "./ui/rates.js" with { type: "text" };
import table from "./ui/table.js" with { type: "text" };
import views from "./ui/views.js" with { type: "text" };
import style from "./ui/style.css" with { type: "text" };

/** One file of the dashboard: its bytes as text and its content type. */
export interface DashboardFile {
  body: string;
  contentType: string;
}

const script = "text/javascript; charset=utf-8";

/** The page, served at `/`. */
export const dashboardPage: DashboardFile = { body: page, contentType: "text/html; charset=utf-8" };

/** The page's modules and style, served at `/ui/NAME`. */
export const dashboardFiles: ReadonlyMap<string, DashboardFile> = new Map([
  ["app.js", { body: app, contentType: script }],
  ["api.js", { body: api, contentType: script }],
  ["columns.js", { body: columns, contentType: script }],
  ["format.js", { body: format, contentType: script }],
  ["rates.js", { body: rates, contentType: script }],
  ["table.js", { body: table, contentType: script }],
  ["views.js", { body: views, contentType: script }],
  ["style.css", { body: style, contentType: "text/css; charset=utf-8" }],
]);
