// The smart client's network side, in real Chromium through Caddy against
// a real local cluster (three nodes, two gateways), every browser byte
// counted by relays in front of Caddy and the gateways:
// - the static files arrive precompressed (Brotli) and chunks negotiated
//   (br); bytes on the wire of a first and a repeat visit are printed;
// - chunk reads go to the gateway the socket hub chose, and after a
//   kill -9 of that gateway they move to the other one while the page
//   keeps working;
// - the minimap draws the whole-grid overview: boxes written over HTTP far
//   from the viewport show as density without their chunks being read,
//   and a click on the minimap goes there;
// - accessibility: axe-core, run in the page and in the no-JS page, finds
//   no serious or critical violation; the grid is usable by keyboard;
// - the first HTML holds the grid's top with its current state (seen with
//   JavaScript off), and with JavaScript no such box is rebuilt; `/#N`
//   still lands on box N.
// The tests share one cluster and run in order.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

import { Cluster, REPO, eventually } from "./lib/cluster.mjs";
import { launchContext, watchErrors } from "./lib/browser.mjs";

const T = { timeout: 120_000 };
const ARTIFACTS = join(REPO, "integration", "e2e", "artifacts");

let cluster;
let failed = false;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  cluster = await Cluster.start({ countBytes: true });
});

after(async () => {
  await cluster?.stop({ keep: failed });
});

function step(name, body) {
  test(name, T, async () => {
    try {
      await body();
    } catch (e) {
      failed = true;
      throw e;
    }
  });
}

const live = (page, ms = 30_000) => page.waitForSelector("html[data-connection=live]", { timeout: ms });

/** Waits until `page` has painted real boxes and its network is quiet:
 * no byte on the wire for `quietMs`. */
async function settle(page, quietMs = 600) {
  await page.waitForSelector('#grid input[type=checkbox][data-index="0"]:not([data-unknown=true])');
  let last = -1;
  await eventually("a quiet network", 15_000, async () => {
    const now = cluster.wire().total;
    const quiet = now === last;
    last = now;
    return quiet;
  }, quietMs);
}

const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

/** The page's budgets (issue 14). A test fails only past `wide` × the
 * budget: 3 for bytes (deterministic), 4 for times (a loaded 2-core test
 * machine stretches them). */
const BUDGET = { firstKb: 30, repeatKb: 2, paintMs: 300 };

/** Prints a figure against its budget; fails only on a wide overrun. */
function budget(what, value, limit, unit, wide = unit === "ms" ? 4 : 3) {
  const verdict = value <= limit ? "within" : value <= wide * limit ? "OVER (not failing)" : "FAR OVER";
  console.log(`e2e budget: ${what} ${value.toFixed(1)} ${unit} / ${limit} ${unit}: ${verdict}`);
  assert.ok(value <= wide * limit, `${what}: ${value.toFixed(1)} ${unit}, over ${wide} x the ${limit} ${unit} budget`);
}

/** `checkraft_gateway_http_chunk_responses_total` summed over answers. */
async function chunkAnswers(gateway) {
  try {
    const text = await cluster.metrics(gateway.addr);
    return text.split("\n")
      .filter((l) => l.startsWith("checkraft_gateway_http_chunk_responses_total{"))
      .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
  } catch {
    return null;
  }
}

step("1. first and repeat visit: precompressed files, bytes on the wire", async () => {
  const ctx = await launchContext();
  try {
    const encodings = new Map();
    ctx.context.on("response", (r) => {
      const path = new URL(r.url()).pathname;
      if (path.endsWith(".js") || path.endsWith(".css") || path === "/") {
        encodings.set(path, r.headers()["content-encoding"] ?? "identity");
      }
    });
    cluster.resetWire();
    const page = await ctx.context.newPage();
    page.errors = watchErrors(page);
    await page.goto(`${cluster.url}/`);
    await live(page);
    // The Service Worker installs (and precaches the shell) on a first visit.
    await page.evaluate(() => navigator.serviceWorker.ready);
    await settle(page);
    const first = cluster.wire();
    await page.close();

    cluster.resetWire();
    const again = await ctx.context.newPage();
    again.errors = watchErrors(again);
    await again.goto(`${cluster.url}/`);
    await live(again);
    await settle(again);
    const repeat = cluster.wire();
    console.log(
      `e2e wire: first visit ${kb(first.total)} (down ${first.down} B, up ${first.up} B, ` +
      `${first.requests.length} requests: ${first.requests.join(", ")}); repeat visit ${kb(repeat.total)} (down ${repeat.down} B, ` +
      `up ${repeat.up} B, ${repeat.requests.length} requests: ${repeat.requests.join(", ")})`,
    );
    // Per request: bytes up (the request's head and body), bytes down
    // (the response's head + body; a websocket's frames count to it).
    const rows = (w) => w.detail.map((r) => `${r.req} up ${r.up} down ${r.downHead ?? "?"}+${r.down - (r.downHead ?? 0)}`).join("; ");
    console.log(`e2e wire detail: first visit: ${rows(first)}`);
    console.log(`e2e wire detail: repeat visit: ${rows(repeat)}`);
    budget("first visit on the wire", first.total / 1024, BUDGET.firstKb, "KB");
    budget("repeat visit on the wire (Service Worker)", repeat.total / 1024, BUDGET.repeatKb, "KB");
    assert.equal(encodings.get("/js/main.js"), "br", "main.js precompressed with Brotli");
    assert.equal(encodings.get("/css/app.css"), "br", "app.css precompressed with Brotli");
    assert.ok(first.down > 0 && repeat.down > 0, "the relays counted the traffic");
    assert.ok(repeat.total < first.total, "a repeat visit costs less than the first");
    assert.deepEqual([...page.errors, ...again.errors], [], "no page errors");
    await again.close();
  } finally {
    await ctx.close();
  }
});

step("1b. first grid paint with 4x CPU throttling", async () => {
  const ctx = await launchContext();
  try {
    const page = await ctx.context.newPage();
    const cdp = await ctx.context.newCDPSession(page);
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
    await page.goto(`${cluster.url}/`);
    await page.waitForFunction(() => performance.getEntriesByName("checkraft:state").length > 0, null, { timeout: 20_000 });
    const t = await page.evaluate(() => {
      const at = (n) => Math.round(performance.getEntriesByName(n)[0]?.startTime ?? -1);
      return {
        fcp: at("first-contentful-paint"),
        script: at("checkraft:grid"),
        state: at("checkraft:state"),
        // Boxes in the first HTML (server-rendered, with their state) are
        // in the first contentful paint: no script runs before it.
        ssr: !!document.getElementById("ssr-chunks"),
      };
    });
    const paint = t.ssr ? t.fcp : t.state;
    console.log(`e2e paint (4x CPU throttling, first visit): first contentful paint ${t.fcp} ms ` +
      `(${t.ssr ? "with server-rendered boxes and their state" : "without boxes"}); script's first grid ` +
      `frame ${t.script} ms, all visible boxes known ${t.state} ms`);
    budget("first grid paint (4x CPU)", paint, BUDGET.paintMs, "ms");
  } finally {
    await ctx.close();
  }
});

step("2. chunk reads follow the socket's gateway, and move on when it is killed", async () => {
  const ctx = await launchContext();
  let killed = null;
  try {
    const page = await ctx.context.newPage();
    page.errors = watchErrors(page);
    await page.goto(`${cluster.url}/`);
    await live(page);
    const wsUrl = await page.getAttribute("html", "data-endpoint");
    const chosen = cluster.gateways.find((g) => wsUrl === `ws://${g.publicAddr}/ws`);
    assert.ok(chosen, `the socket uses a gateway: ${wsUrl}`);
    const other = cluster.gateways.find((g) => g !== chosen);
    // A jump makes the page read new chunks: over HTTP, from the socket's
    // gateway directly (not through Caddy).
    const before = await chunkAnswers(chosen);
    await page.fill("#jump-input", "300000");
    await page.press("#jump-input", "Enter");
    await eventually("chunk reads from the socket's gateway", 10_000, async () =>
      (await page.getAttribute("html", "data-http-endpoint")) === `http://${chosen.publicAddr}`)
      .catch(async (e) => {
        const http = await page.evaluate(() => window.__checkraft.http);
        throw new Error(`${e.message}; socket ${wsUrl}, reads ${JSON.stringify(http)}`);
      });
    assert.ok((await chunkAnswers(chosen)) > before, "the chosen gateway served the chunks");

    killed = `gateway-${chosen.id}`;
    await cluster.kill9(killed);
    const otherBefore = await chunkAnswers(other);
    await page.fill("#jump-input", "700000");
    await page.press("#jump-input", "Enter");
    await page.locator('input[type=checkbox][data-index="700000"]').waitFor({ timeout: 10_000 });
    await eventually("chunk reads from the other gateway", 20_000, async () =>
      (await page.getAttribute("html", "data-http-endpoint")) === `http://${other.publicAddr}`);
    assert.ok((await chunkAnswers(other)) > otherBefore, "the other gateway served the chunks");
    // The page keeps working: the box is loaded, and a click is applied.
    await live(page);
    await eventually("box 700000 loaded", 10_000, () => page.evaluate(() =>
      document.querySelector('input[type=checkbox][data-index="700000"]')?.dataset.unknown !== "true"));
    await page.locator('input[type=checkbox][data-index="700001"]').click();
    const ack = await eventually("an ack for box 700001", 20_000, () => page.evaluate(() =>
      window.__checkraft.acks.find((a) => a.index === 700001)));
    assert.equal(ack.status, "applied");
    const counts = await page.evaluate(() => window.__checkraft.http.counts);
    console.log(`e2e routing: chunk reads per base ${JSON.stringify(counts)}`);
    assert.deepEqual(page.errors.filter((e) => !e.startsWith("HTTP 503")), [], "no page errors");
  } finally {
    await ctx.close();
    if (killed) await cluster.restart(killed);
  }
});

step("3. the minimap shows boxes written far away, without their chunks; a click jumps there", async () => {
  const ctx = await launchContext();
  try {
    const far = 900_000;
    const farChunk = Math.floor(far / 4096);
    const chunkReads = [];
    ctx.context.on("request", (r) => {
      const m = new URL(r.url()).pathname.match(/^\/api\/chunks\/(\d+)$/);
      if (m) chunkReads.push(Number(m[1]));
    });
    const page = await ctx.context.newPage();
    page.errors = watchErrors(page);
    await page.goto(`${cluster.url}/`);
    await live(page);
    await settle(page);
    assert.equal(await page.evaluate((i) => window.__checkraft.minimapDensity(i), far), 0,
      "the overview says the far region is empty");
    // 40 boxes over HTTP, 20 through each gateway (each has its own
    // per-address write limit, burst 20).
    await Promise.all(Array.from({ length: 40 }, async (_, k) => {
      const g = cluster.gateways[k % 2];
      const r = await fetch(`http://${g.addr}/api/boxes/${far + 3 * k}`, {
        method: "PUT", body: JSON.stringify({ checked: true }),
      });
      assert.equal(r.status, 200, `PUT box ${far + 3 * k}`);
    }));
    const density = await eventually("the far region's density on the minimap", 20_000, async () => {
      const d = await page.evaluate((i) => window.__checkraft.minimapDensity(i), far);
      return d > 0 ? d : null;
    }, 250);
    console.log(`e2e minimap: density ${density.toFixed(4)} at box ${far} after ${await page.evaluate(() => window.__checkraft.overviewFetches())} overview fetches`);
    assert.ok(!chunkReads.includes(farChunk), `chunk ${farChunk} was not fetched (${chunkReads})`);
    await page.screenshot({ path: join(ARTIFACTS, "minimap-density.png") });
    // A click on the minimap at that height jumps there.
    const box = await page.locator("#minimap").boundingBox();
    const boxes = await page.evaluate(() => window.__checkraft.state().boxes);
    await page.mouse.click(box.x + box.width / 2, box.y + (far / boxes) * box.height + 1);
    await eventually("the grid near the far boxes", 10_000, () => page.evaluate((far) =>
      [...document.querySelectorAll("#grid input[type=checkbox]")]
        .some((el) => Math.abs(Number(el.dataset.index) - far) < 10_000), far));
    await eventually("a far box shown checked", 10_000, () => page.evaluate((far) =>
      [...document.querySelectorAll("#grid input[type=checkbox]")]
        .some((el) => Number(el.dataset.index) >= far && el.checked), far));
    assert.deepEqual(page.errors, [], "no page errors");
  } finally {
    await ctx.close();
  }
});

/** axe-core's violations of impact serious or critical on `page`. */
async function axeViolations(page) {
  const source = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  // Evaluated through the DevTools protocol: the page's CSP does not apply.
  await page.evaluate(source);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.length} nodes, e.g. ${v.nodes[0]?.target})`);
}

step("4. accessibility: axe-core on the page and the no-JS page; the grid by keyboard", async () => {
  const ctx = await launchContext();
  try {
    const page = await ctx.context.newPage();
    await page.goto(`${cluster.url}/`);
    await live(page);
    await settle(page);
    const onPage = await axeViolations(page);
    // The no-JS page runs no script of its own (its CSP allows none), so
    // a JavaScript-enabled context renders it alike and lets axe's own
    // timers run.
    const plain = await ctx.context.newPage();
    await plain.goto(`${cluster.url}/nojs?page=0`);
    assert.equal(await plain.locator("script").count(), 0);
    const onNojs = await axeViolations(plain);
    console.log(`e2e axe: page ${onPage.length}, no-JS page ${onNojs.length} serious/critical violations`);
    assert.deepEqual(onPage, [], "the page");
    assert.deepEqual(onNojs, [], "the no-JS page");
    // Keyboard: focus the grid's tab stop, move right and down, toggle
    // with Space; the focused box is visibly outlined and named.
    await page.locator("#grid input[tabindex='0']").focus();
    const start = Number(await page.evaluate(() => document.activeElement.dataset.index));
    await page.keyboard.press("ArrowRight");
    await page.keyboard.press("ArrowDown");
    const cols = await page.evaluate(() => Number(getComputedStyle(document.getElementById("grid")).getPropertyValue("--cols")));
    // The focus moves at the next frame.
    await eventually("the focus to move right and down", 5_000, () => page.evaluate((want) =>
      Number(document.activeElement?.dataset.index) === want, start + 1 + cols));
    const focused = await page.evaluate(() => {
      const el = document.activeElement;
      return { index: Number(el.dataset.index), label: el.getAttribute("aria-label"), outline: getComputedStyle(el).outlineStyle };
    });
    assert.equal(focused.label, `box ${focused.index}`);
    assert.notEqual(focused.outline, "none", "the focused box shows a focus ring");
    await page.keyboard.press("Space");
    const ack = await eventually(`an ack for box ${focused.index}`, 20_000, () => page.evaluate((i) =>
      window.__checkraft.acks.find((a) => a.index === i), focused.index));
    assert.equal(ack.status, "applied");
    await plain.screenshot({ path: join(ARTIFACTS, "nojs-styled.png") });
  } finally {
    await ctx.close();
  }
});

step("5. server-rendered first paint: real boxes without JS; with JS the page adopts them", async () => {
  const box = 3 * 34 + 5; // in the rendered rows at any width
  const r = await fetch(`${cluster.url}/api/boxes/${box}`, { method: "PUT", body: JSON.stringify({ checked: true }) });
  assert.equal(r.status, 200);
  const noJs = await launchContext({ javaScriptEnabled: false });
  const ctx = await launchContext();
  try {
    const plain = await noJs.context.newPage();
    await plain.goto(`${cluster.url}/`);
    const rendered = await plain.locator("#grid input[type=checkbox][data-index]").count();
    assert.ok(rendered >= 34 * 10, `the first response holds the grid's top (${rendered} boxes)`);
    assert.equal(await plain.locator(`#grid input[data-index="${box}"]`).isChecked(), true, "with its current state");
    assert.equal(await plain.locator(`#grid input[data-index="${box + 1}"]`).isChecked(), false);
    await plain.screenshot({ path: join(ARTIFACTS, "ssr-no-js.png") });

    const page = await ctx.context.newPage();
    // Watches the grid from the first byte: inputs the parser inserts
    // (server-rendered) and any input the script removes afterwards.
    await page.addInitScript(() => {
      window.__ssr = { parsed: 0, removed: 0, built: 0 };
      new MutationObserver((records) => {
        for (const rec of records) {
          for (const n of rec.addedNodes) {
            const inputs = n.nodeType === 1 ? n.querySelectorAll?.("input[type=checkbox]").length ?? 0 : 0;
            if (document.readyState === "loading") window.__ssr.parsed += inputs;
            else window.__ssr.built += inputs;
          }
          for (const n of rec.removedNodes) {
            window.__ssr.removed += n.nodeType === 1 ? (n.matches?.("input[type=checkbox]") ? 1 : 0)
              + (n.querySelectorAll?.("input[type=checkbox]").length ?? 0) : 0;
          }
        }
      }).observe(document, { childList: true, subtree: true });
    });
    await page.goto(`${cluster.url}/`);
    await live(page);
    await settle(page);
    const seen = await page.evaluate(() => window.__ssr);
    console.log(`e2e ssr: ${rendered} boxes rendered without JS; with JS ${JSON.stringify(seen)}`);
    assert.ok(seen.parsed > 0, "the page arrived with boxes");
    assert.equal(seen.removed, 0, "no server-rendered box was rebuilt");
    assert.equal(await page.locator(`#grid input[data-index="${box}"]`).isChecked(), true);
    // A share link still lands on its box.
    const far = await ctx.context.newPage();
    await far.goto(`${cluster.url}/#654321`);
    await live(far);
    await far.locator('#grid input[data-index="654321"]').waitFor({ state: "visible", timeout: 10_000 });
  } finally {
    await ctx.close();
    await noJs.close();
  }
});
