// The page on the largest grid the protocol allows: 4,294,967,295 boxes
// (2^32 - 1) in chunks of 32,768, on a real cluster. The page scales its
// scroll range past the browser's element-height cap; a jump to the last
// box, a click on it and a second browser seeing it prove the whole path.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { Cluster, eventually } from "./lib/cluster.mjs";
import { launchContext } from "./lib/browser.mjs";

const BOXES = 4_294_967_295;
let cluster;
let A;
let B;
let failed = false;

before(async () => {
  cluster = await Cluster.start({ boxes: BOXES, shards: 8, chunkSize: 32_768 });
  A = await launchContext();
  B = await launchContext({ viewport: { width: 390, height: 844 } });
});

after(async () => {
  await A?.close();
  await B?.close();
  await cluster?.stop({ keep: failed });
});

test("a 2^32 - 1 box grid: jump to the last box, check it, see it elsewhere", { timeout: 180_000 }, async () => {
  try {
    const last = BOXES - 1;
    const a = await A.context.newPage();
    await a.goto(`${cluster.url}/#${last}`);
    await a.waitForSelector("html[data-connection=live]", { timeout: 30_000 });
    const box = (page, i) => page.locator(`input[type=checkbox][data-index="${i}"]`);
    await box(a, last).waitFor({ state: "visible", timeout: 15_000 });
    const state = await a.evaluate(() => window.__checkraft.state());
    assert.equal(state.boxes, BOXES);
    // The page's content stays under the browser's element-height cap.
    const height = await a.evaluate(() => document.getElementById("grid").scrollHeight);
    assert.ok(height < 16_000_000, `scaled scroll range: ${height} px`);
    // Only chunks near the view are subscribed, out of 131,072.
    assert.ok(state.subscribed.length <= 32, `subscribed ${state.subscribed.length} chunks`);
    await box(a, last).click();
    await eventually(`an applied ack for box ${last}`, 20_000, () =>
      a.evaluate((i) => window.__checkraft.acks.some((x) => x.index === i && x.status === "applied"), last));
    const b = await B.context.newPage();
    await b.goto(`${cluster.url}/#${last}`);
    await b.waitForSelector("html[data-connection=live]", { timeout: 30_000 });
    await eventually(`box ${last} checked in the other browser`, 15_000, () =>
      b.evaluate((i) => document.querySelector(`input[data-index="${i}"]`)?.checked === true, last));
    const r = await fetch(`${cluster.url}/api/boxes/${last}`);
    assert.equal((await r.json()).checked, true);
    // The middle of the grid is reachable through the jump field too.
    const mid = 2 ** 31;
    await b.fill("#jump-input", String(mid));
    await b.press("#jump-input", "Enter");
    await box(b, mid).waitFor({ state: "visible", timeout: 15_000 });
  } catch (e) {
    failed = true;
    throw e;
  }
});
