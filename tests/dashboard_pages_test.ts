/**
 * Goal: the dashboard works behind the bearer token, and stays usable with
 * 1,000 volumes. Method: single real nodes, headless Chromium (Debian's)
 * driven by playwright-core. With `--token-file`, the page (served without a
 * token) asks for it, and every API call it then makes carries it (each
 * request the browser sends is recorded). With 1,000 volumes created through
 * the API, the volumes table shows pages of 50 and its filter box narrows them.
 */
import assert from "node:assert/strict";
import { cell, launchBrowser, nextRefresh, refreshed, rowKeys } from "./_browser.ts";
import { removeData, startNode } from "./_node.ts";
import { createVolume, MiB } from "./_nbd.ts";

Deno.test("with a token, the page asks for it and every API call carries it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-dashboard-token-" });
  const token = "dashboard-token-" + crypto.randomUUID();
  await Deno.writeTextFile(`${dir}/token`, token + "\n");
  const node = await startNode({ args: ["--token-file", `${dir}/token`] });
  const browser = await launchBrowser();
  try {
    // The page and its files need no token; the API does.
    for (const path of ["/", "/ui/app.js", "/ui/style.css"]) {
      const response = await node.fetch(path);
      assert.equal(response.status, 200, path);
      await response.body?.cancel();
    }
    assert.equal((await node.fetch("/ui/nothing.js")).status, 404);
    for (const path of ["/v1/stats", "/v1/events"]) {
      const response = await node.fetch(path);
      assert.equal(response.status, 401, path);
      await response.body?.cancel();
    }
    const created = await node.fetch("/v1/volumes", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "vm1", size: 8 * MiB }),
    });
    assert.equal(created.status, 201, await created.text());

    const page = await browser.newPage();
    const calls: { url: string; authorization: string | undefined }[] = [];
    page.on("request", (request) => {
      if (new URL(request.url()).pathname.startsWith("/v1/")) {
        calls.push({ url: request.url(), authorization: request.headers()["authorization"] });
      }
    });
    await page.goto(`${node.url}/`);
    await page.locator("#token-form").waitFor({ state: "visible" });
    assert.equal(await page.locator("#main").isHidden(), true);

    // A wrong token is refused and said so; the right one opens the page.
    await page.fill("#token-input", "not-the-token-at-all");
    await page.click("#token-form button");
    await page.locator("#token-error").filter({ hasText: "refused" }).waitFor();
    const beforeToken = calls.length;
    await page.fill("#token-input", token);
    await page.click("#token-form button");
    await refreshed(page, 2);
    assert.equal(await page.locator("#main").isVisible(), true);
    assert.equal(await cell(page, "volumes", "vm1", "size").textContent(), "8.00 MiB");
    const id = (await Deno.readTextFile(`${node.data}/node-id`)).trim();
    assert.equal(await cell(page, "members", id, "state").textContent(), "alive");
    const withToken = calls.slice(beforeToken);
    assert.ok(withToken.length >= 10, `${withToken.length} API calls`);
    for (const call of withToken) assert.equal(call.authorization, `Bearer ${token}`, call.url);
    assert.ok(
      calls.slice(0, beforeToken).every((call) => call.authorization !== `Bearer ${token}`),
    );
    // The access log keeps the page's answered polls to `debug`; refusals stay in it.
    assert.deepEqual(node.log.filter((line) => /GET \/v1\/\S+ 200/.test(line)), []);
    assert.ok(node.log.some((line) => /GET \/v1\/stats 401/.test(line)));
    // The token stays in this tab: a reload needs no form.
    await page.reload();
    await refreshed(page, 1);
    assert.equal(await page.locator("#token-form").isHidden(), true);
  } finally {
    await browser.close();
    await node.stop();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with 1,000 volumes the page shows them in pages and filters them", async () => {
  const node = await startNode();
  const browser = await launchBrowser();
  const count = 1000;
  try {
    const names = Array.from({ length: count }, (_, i) => `vol-${String(i).padStart(4, "0")}`);
    for (let i = 0; i < names.length; i += 16) {
      await Promise.all(
        names.slice(i, i + 16).map((name) => createVolume(node, name, { size: MiB })),
      );
    }
    const listStarted = performance.now();
    assert.equal((await (await node.fetch("/v1/volumes")).json()).length, count);
    console.log(`GET /v1/volumes of ${count}: ${Math.round(performance.now() - listStarted)} ms`);
    const page = await browser.newPage();
    await page.goto(`${node.url}/`);
    await refreshed(page, 1);
    const tools = page.locator("#volumes .tools");
    assert.equal(await tools.locator(".count").textContent(), `${count} rows`);
    assert.equal(await tools.locator(".page").textContent(), "page 1 of 20");
    assert.deepEqual(await rowKeys(page, "volumes"), names.slice(0, 50));
    await tools.locator(".next").click();
    assert.deepEqual(await rowKeys(page, "volumes"), names.slice(50, 100));
    // Sorting by name, descending, then filtering.
    await page.locator("#volumes th", { hasText: /^volume$/ }).click();
    await page.locator("#volumes th", { hasText: /^volume$/ }).click();
    await tools.locator(".filter").fill("vol-09");
    assert.equal(await tools.locator(".count").textContent(), `100 of ${count} rows`);
    assert.equal(await tools.locator(".page").textContent(), "page 1 of 2");
    assert.deepEqual(await rowKeys(page, "volumes"), names.slice(950).reverse());
    await tools.locator(".filter").fill("vol-0421");
    assert.deepEqual(await rowKeys(page, "volumes"), ["vol-0421"]);
    // It keeps refreshing with all of them, and the filter holds across refreshes.
    const started = performance.now();
    await nextRefresh(page);
    await nextRefresh(page);
    console.log(
      `two refreshes with ${count} volumes: ${Math.round(performance.now() - started)} ms`,
    );
    assert.deepEqual(await rowKeys(page, "volumes"), ["vol-0421"]);
    assert.equal(await page.locator("#volumes tbody tr").count(), 1);
  } finally {
    await browser.close();
    await node.stop();
    await removeData(node);
  }
});
