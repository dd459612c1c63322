// The page in real Chromium, through Caddy, against a real local cluster
// (three nodes, two gateways): the eight scenarios of the browser issue.
// They share one cluster and run in order; the kill tests restart what
// they killed. Screenshots go to integration/e2e/artifacts/.
//
// The page's test contract (assets/index.html, assets/js/main.js):
// - cells are `input[type=checkbox][data-index=N]`, `data-pending="true"`
//   until acknowledged;
// - <html data-connection="live|..." data-endpoint="ws://..."
//   data-socket-mode="shared-worker|web-locks|per-tab">;
// - `form#jump-form` / `input#jump-input`, `#offline-banner`, `#notice`;
// - `window.__checkraft.acks`: every Ack outcome of this tab's clicks.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { Cluster, REPO, eventually, sleep } from "./lib/cluster.mjs";
import { launchContext, watchErrors } from "./lib/browser.mjs";

const ARTIFACTS = join(REPO, "integration", "e2e", "artifacts");
const T = { timeout: 180_000 };

let cluster;
let A; // a desktop browser
let B; // a phone-sized browser
let failed = false;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  cluster = await Cluster.start();
  A = await launchContext();
  B = await launchContext({ viewport: { width: 390, height: 844 } });
});

after(async () => {
  await A?.close();
  await B?.close();
  await cluster?.stop({ keep: failed });
});

/** Pages opened by `openGrid` and not closed yet. */
const openPages = new Set();

/** Runs a test body; remembers a failure so the logs are kept. A failed
 * body's pages are closed, so the next step (which may count sockets)
 * starts from none and fails only for its own reasons. */
function step(name, body) {
  test(name, T, async () => {
    try {
      await body();
    } catch (e) {
      failed = true;
      throw e;
    } finally {
      for (const page of openPages) await page.close().catch(() => {});
      openPages.clear();
    }
  });
}

// ------------------------------------------------------------ helpers

/** Opens the grid at `hash` in `ctx` and waits until it is live. */
async function openGrid(ctx, hash = "") {
  const page = await ctx.context.newPage();
  openPages.add(page);
  page.on("close", () => openPages.delete(page));
  page.errors = watchErrors(page);
  await page.goto(`${cluster.url}/${hash}`);
  await waitLive(page);
  return page;
}

async function waitLive(page, ms = 30_000) {
  await page.waitForSelector("html[data-connection=live]", { timeout: ms });
}

const cell = (page, i) => page.locator(`input[type=checkbox][data-index="${i}"]`);

async function isChecked(page, i) {
  return page.evaluate((i) => {
    const el = document.querySelector(`input[type=checkbox][data-index="${i}"]`);
    return el ? el.checked : null;
  }, i);
}

/** Jumps to box `i` through the jump field; waits until its cell shows. */
async function jump(page, i) {
  await page.fill("#jump-input", String(i));
  await page.press("#jump-input", "Enter");
  await cell(page, i).waitFor({ state: "visible", timeout: 10_000 });
}

/** The ack outcomes this page has seen for box `i`. */
async function acksFor(page, i) {
  return page.evaluate((i) => window.__checkraft.acks.filter((a) => a.index === i), i);
}

/** Clicks box `i` (it must be unchecked) and waits for its ack: returns
 * the status ("applied", "unavailable", ...). */
async function click(page, i, ms = 20_000) {
  const before = (await acksFor(page, i)).length;
  await cell(page, i).click();
  const ack = await eventually(`an ack for box ${i}`, ms, async () => {
    const acks = await acksFor(page, i);
    return acks.length > before ? acks[acks.length - 1] : null;
  });
  return ack.status;
}

/** Waits until `page` shows box `i` as `checked`. */
async function seen(page, i, checked = true, ms = 15_000) {
  await eventually(`box ${i} to show ${checked}`, ms, async () => (await isChecked(page, i)) === checked);
}

async function boxOverHttp(i) {
  const r = await fetch(`${cluster.url}/api/boxes/${i}`);
  assert.equal(r.status, 200, `GET /api/boxes/${i}`);
  return (await r.json()).checked;
}

// -------------------------------------------------------------- tests

step("1. a click in one browser appears in another, and survives a reload", async () => {
  const a = await openGrid(A);
  const b = await openGrid(B);
  assert.equal(await isChecked(b, 5), false);
  assert.equal(await click(a, 5), "applied");
  assert.equal(await isChecked(a, 5), true);
  await seen(b, 5);
  await b.reload();
  await waitLive(b);
  await seen(b, 5);
  assert.equal(await boxOverHttp(5), true);
  // Live counters: the total follows the change at once, "online" comes
  // with the gateway's next Stats.
  const count = (page, id) => page.evaluate((id) => Number(document.getElementById(id).dataset.value ?? -1), id);
  await eventually("the checked counter to count box 5", 10_000, async () => (await count(a, "checked-count")) >= 1);
  await eventually("the online counter", 15_000, async () => (await count(a, "online-count")) >= 1, 250);
  await a.screenshot({ path: join(ARTIFACTS, "main-page.png") });
  await b.screenshot({ path: join(ARTIFACTS, "main-page-phone.png") });
  assert.deepEqual([...a.errors, ...b.errors], [], "no page errors");
  await b.close();
  await a.close();
});

step("2. two tabs of one browser share one websocket", async () => {
  const tab1 = await openGrid(A);
  const tab2 = await openGrid(A);
  const mode = await tab1.getAttribute("html", "data-socket-mode");
  assert.equal(mode, "shared-worker");
  // Both tabs are live, and the gateways count one socket between them
  // (B closed its pages, so A's is the only one).
  await eventually("exactly one websocket over all gateways", 15_000, async () => {
    const per = await cluster.wsConnections();
    return per.reduce((n, g) => n + (g.connections ?? 0), 0) === 1;
  }, 250);
  // The shared socket really serves both tabs: a click in one shows in
  // the other.
  assert.equal(await click(tab1, 7), "applied");
  await seen(tab2, 7);
  await sleep(1000);
  const per = await cluster.wsConnections();
  assert.equal(per.reduce((n, g) => n + (g.connections ?? 0), 0), 1, JSON.stringify(per));
  await tab2.close();
  await tab1.close();
});

step("3. kill -9 of the page's gateway: the page reconnects and a click succeeds", async () => {
  const page = await openGrid(A);
  const endpoint = await page.getAttribute("html", "data-endpoint");
  const victim = cluster.gateways.find((g) => endpoint.includes(g.addr));
  assert.ok(victim, `the page's endpoint ${endpoint} is one of the gateways`);
  await cluster.kill9(`gateway-${victim.id}`);
  await eventually("the page to reconnect to the other gateway", 30_000, async () => {
    const state = await page.getAttribute("html", "data-connection");
    const now = await page.getAttribute("html", "data-endpoint");
    return state === "live" && !now.includes(victim.addr);
  }, 200);
  assert.equal(await click(page, 9), "applied");
  const other = await openGrid(B);
  await seen(other, 9);
  await other.close();
  await cluster.restart(`gateway-${victim.id}`);
  await page.close();
});

step("4. kill -9 of a shard leader: the page keeps working, no acked click is lost", async () => {
  const page = await openGrid(A);
  const first = 100;
  const { node, shard } = await cluster.leaderOf(first);
  const acked = [];
  const others = [];
  // Clicks at a pace under the per-address rate limit, before, during and
  // after the leader's death; each waits for its ack (the gateway retries
  // a write until a new leader commits it, or answers "unavailable").
  for (let k = 0; k < 24; k++) {
    const i = first + k;
    if (k === 6) await cluster.kill9(`node-${node}`);
    const status = await click(page, i, 30_000);
    (status === "applied" ? acked : others).push({ i, status });
    await sleep(300);
  }
  assert.ok(acked.length >= 12, `most clicks on shard ${shard} applied: ${JSON.stringify(others)}`);
  const after = acked.filter(({ i }) => i >= first + 6);
  assert.ok(after.length > 0, "clicks after the leader's death were applied");
  await cluster.restart(`node-${node}`);
  // Every acknowledged click is there: in a fresh page and over HTTP.
  const fresh = await openGrid(B);
  await jump(fresh, first);
  for (const { i } of acked) {
    await seen(fresh, i);
    assert.equal(await boxOverHttp(i), true, `acknowledged box ${i}`);
  }
  // A click that was not applied reverted in the page.
  for (const { i } of others) {
    assert.equal(await isChecked(page, i), await boxOverHttp(i), `box ${i} agrees with the server`);
  }
  await fresh.close();
  await page.close();
});

step("5. no-JS: a POST to /nojs/set checks a box that a JS page sees", async () => {
  const box = 4321;
  const page = Math.floor(box / 1000);
  const r = await fetch(`${cluster.url}/nojs/set`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: `set=${box}:1&page=${page}`,
    redirect: "manual",
  });
  assert.equal(r.status, 303);
  assert.equal(r.headers.get("location"), `/nojs?page=${page}#box-${box}`);
  const js = await openGrid(A, `#${box}`);
  await seen(js, box);
  await js.close();
  // Without JavaScript, the main page leads to /nojs, which renders.
  const noScript = await launchContext({ javaScriptEnabled: false });
  try {
    const p = await noScript.context.newPage();
    await p.goto(`${cluster.url}/`);
    await p.click("noscript a[href='/nojs'], a[href='/nojs']");
    await p.waitForURL(/\/nojs/);
    await p.goto(`${cluster.url}/nojs?page=${page}`);
    const button = p.locator(`button[value="${box}:0"]`);
    assert.equal(await button.count(), 1, "the checked box offers to uncheck");
    await p.screenshot({ path: join(ARTIFACTS, "nojs-page.png"), fullPage: false });
  } finally {
    await noScript.close();
  }
});

step("6. jump to box 999,999, check it, and see it from another browser", async () => {
  const box = 999_999;
  const a = await openGrid(A);
  await jump(a, box);
  assert.equal(await click(a, box), "applied");
  const b = await openGrid(B, `#${box}`);
  await cell(b, box).waitFor({ state: "visible", timeout: 10_000 });
  await seen(b, box);
  await b.close();
  await a.close();
});

step("7. scrolling through 10,000 rows has no long task over 50 ms", async () => {
  const page = await openGrid(A);
  // Measured once before scrolling: the probe walks every cell and
  // forces a layout, which would itself be a long task if run mid-scroll.
  const lowest = () => page.evaluate(() => {
    const top = document.getElementById("viewport").getBoundingClientRect().top;
    return Math.min(
      ...[...document.querySelectorAll("input[type=checkbox][data-index]")]
        .filter((c) => c.getBoundingClientRect().top >= top - 1)
        .map((c) => Number(c.dataset.index)),
    );
  });
  const { columns, rowHeight } = await page.evaluate(() => {
    const cells = [...document.querySelectorAll("input[type=checkbox][data-index]")];
    const top = cells[0].getBoundingClientRect().top;
    const row = cells.find((c) => c.getBoundingClientRect().top > top + 1);
    return {
      columns: cells.filter((c) => Math.abs(c.getBoundingClientRect().top - top) < 1).length,
      rowHeight: row.getBoundingClientRect().top - top,
    };
  });
  const target = (await lowest()) + 10_000 * columns;
  const grid = await page.locator("#grid").boundingBox();
  await page.mouse.move(grid.x + grid.width / 2, grid.y + Math.min(grid.height / 2, 300));
  await page.evaluate(() => {
    window.__longtasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longtasks.push(Math.round(e.duration));
    }).observe({ type: "longtask" });
  });
  // A fast, steady scroll: 400 px per frame (25,000 px/s, about 700 rows
  // a second) over 10,000 rows. Progress is read from the scroll offset
  // every 25 frames, a cheap probe.
  const distance = 10_000 * rowHeight;
  const scrolled = () => page.evaluate(() => document.getElementById("viewport").scrollTop);
  const from = await scrolled();
  await eventually("10,000 rows of scrolling", 180_000, async () => {
    for (let k = 0; k < 25; k++) {
      await page.mouse.wheel(0, 400);
      await sleep(16);
    }
    return (await scrolled()) - from >= distance;
  }, 0);
  await sleep(500);
  const long = await page.evaluate(() => window.__longtasks);
  const reached = await lowest();
  assert.ok(reached >= target - columns, `scrolled to box ${reached}, wanted ${target}`);
  assert.deepEqual(long.filter((d) => d > 50), [], `long tasks while scrolling ${columns} columns`);
  await page.close();
});

step("8. an offline reload shows the app shell and the last state", async () => {
  const page = await openGrid(A);
  // The Service Worker controls the page (a first visit may need one
  // reload for it to take over).
  await eventually("the service worker to control the page", 15_000, async () => {
    if (await page.evaluate(() => !!navigator.serviceWorker.controller)) return true;
    await page.reload();
    await waitLive(page);
    return false;
  }, 500);
  await seen(page, 5);
  assert.equal(await click(page, 11), "applied");
  await sleep(1500); // the page saves its state (debounced, under 1 s)
  await A.context.setOffline(true);
  await cluster.kill9("caddy");
  try {
    await page.reload();
    await page.waitForSelector("#offline-banner:not([hidden])", { timeout: 15_000 });
    await page.waitForSelector("html[data-connection=offline]", { timeout: 15_000 });
    await seen(page, 5);
    await seen(page, 11);
    assert.equal(await cell(page, 5).isDisabled(), true, "read-only while offline");
    await page.screenshot({ path: join(ARTIFACTS, "offline-page.png") });
  } finally {
    await A.context.setOffline(false);
    await cluster.restart("caddy");
  }
  await page.close();
});
