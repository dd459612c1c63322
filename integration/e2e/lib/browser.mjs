// Debian's Chromium driven by playwright-core (no browser download: the
// package is pinned to the version that speaks this Chromium's protocol).

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = process.env.CHECKRAFT_CHROMIUM ?? "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A persistent-profile browser context: its own user data dir, so its
 * SharedWorker, Service Worker and caches are its own (a "browser"). */
export async function launchContext({
  viewport = { width: 1280, height: 800 },
  javaScriptEnabled = true,
} = {}) {
  const profile = mkdtempSync(join(tmpdir(), "checkraft-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport,
    javaScriptEnabled,
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** Collects uncaught page errors and failed same-origin requests of
 * `page` (the browser's own favicon probe aside) for assertions. */
export function watchErrors(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("response", (r) => {
    const url = new URL(r.url());
    if (r.status() >= 400 && url.pathname !== "/favicon.ico") {
      errors.push(`HTTP ${r.status()} for ${url.pathname}`);
    }
  });
  return errors;
}
