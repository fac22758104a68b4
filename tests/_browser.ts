/**
 * Test harness: headless Chromium (Debian's `chromium`) driven by
 * playwright-core, for the dashboard's tests. The browser is the system's, so
 * nothing is downloaded; `--no-sandbox` because tests may run as root.
 */
import { type Browser, chromium, type Locator, type Page } from "playwright-core";

/** Where Debian installs Chromium (tests/install_tools.sh). */
export const chromiumPath = "/usr/bin/chromium";

/** Starts a headless Chromium; close it when done. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/** Waits until the dashboard has finished `count` refreshes in all since it loaded. */
export async function refreshed(page: Page, count: number, timeoutMs = 30_000): Promise<void> {
  await page.waitForFunction(`Number(document.body.dataset.refreshes ?? 0) >= ${count}`, null, {
    timeout: timeoutMs,
  });
}

/** Refreshes done since the page loaded. */
export async function refreshes(page: Page): Promise<number> {
  return Number(await page.evaluate("document.body.dataset.refreshes ?? 0"));
}

/** Waits for the next refresh after now. */
export async function nextRefresh(page: Page, timeoutMs = 30_000): Promise<void> {
  await refreshed(page, await refreshes(page) + 1, timeoutMs);
}

/** The cell `field` of the row `key` of the table in `#section` (keys are names or ids). */
export function cell(page: Page, section: string, key: string, field: string): Locator {
  return page.locator(`#${section} tbody tr[data-key="${key}"] td[data-field="${field}"]`);
}

/** The keys of the rows the table in `#section` shows now (its current page). */
export async function rowKeys(page: Page, section: string): Promise<string[]> {
  return await page.locator(`#${section} tbody tr`).evaluateAll((rows) =>
    rows.map((row) => row.getAttribute("data-key") ?? "")
  );
}

/**
 * Polls `check` until it returns true (the page refreshes itself every 1.5 s);
 * fails with `what` after `limitMs`.
 */
export async function until(
  what: string,
  check: () => Promise<boolean>,
  limitMs = 60_000,
): Promise<void> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what}: not within ${limitMs} ms`);
}
