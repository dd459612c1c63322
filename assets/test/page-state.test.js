// Unit tests of the page's state transitions (page-state.js): layout and
// scrolling, subscriptions and eviction, chunk data, clicks and acks,
// jumps and keys, hub status, counters, the minimap and the overview.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  MAX_KEPT_CHUNKS, MINIMAP_MS, NOTICES, SUBSCRIBE_DEBOUNCE_MS, SUBSCRIBE_MAX_WAIT_MS,
  arrowTarget, cellFlags, connectionView, initialState, isOffline, step,
} from "../js/page-state.js";
import { receiveFetch } from "../js/state.js";
import { CHECKED, DISABLED, HIGHLIGHT, PENDING, UNKNOWN } from "../js/viewplan.js";

const VIEW = { width: 720, height: 360, hash: null, saved: null, now: 1_000, epoch: 1_700_000_000_000 };
// 720 / 36 = 20 columns, 360 / 36 = 10 visible rows; chunks of 100 boxes (5 rows): 2 chunks in view.
const DIMS = { ...VIEW, type: "dims", boxes: 100_000, chunkSize: 100 };

/** Runs events in order; returns the last state and every effect. */
function run(s, ...events) {
  const all = [];
  for (const ev of events) {
    const r = step(s, ev);
    s = r.state;
    all.push(...r.fx);
  }
  return { state: s, fx: all };
}
const named = (fx, name) => fx.filter((f) => f.fx === name);
const live = (gen = 1) => ({ type: "status", state: "live", endpoint: "ws://a", endpoints: ["ws://a"], gen });

/** Loads chunk `c` of the state's model with `bytes` (all zero by default). */
function load(s, c, seq = 1, bytes = null) {
  const e = s.model.chunk(c);
  receiveFetch(e, { status: 200, bytes: bytes ?? new Uint8Array(e.bits.length), seq, etag: null });
  return e;
}

test("steps never mutate the state they are given", () => {
  const s0 = initialState();
  const frozen = JSON.stringify({ ...s0, model: null, densities: null });
  run(s0, DIMS, live(), { type: "frame", scrollTop: 500, now: 2_000 }, { type: "jump", text: "5000" });
  assert.equal(JSON.stringify({ ...s0, model: null, densities: null }), frozen);
  assert.equal(s0.model.boxes, 0);
});

test("dimensions: a model, a layout, a scroll, subscriptions of the visible chunks only", () => {
  const { state: s, fx } = run(initialState(), DIMS);
  assert.equal(s.known, true);
  assert.equal(s.model.boxes, 100_000);
  assert.equal(s.L.cols, 20);
  assert.deepEqual(named(fx, "layout").map((f) => f.resetPool), [true]);
  assert.deepEqual(named(fx, "scroll"), [{ fx: "scroll", top: 0 }]);
  assert.deepEqual(s.visible, [0, 1]);
  assert.deepEqual(s.wanted, [0, 1], "no margin while the view has not moved");
  assert.deepEqual(named(fx, "subscribe"), [{ fx: "subscribe", chunks: [0, 1] }]);
  assert.deepEqual(named(fx, "fetch"), [], "no fetch before the first socket (or the wait)");
  assert.equal(named(fx, "model").length, 1);
  assert.deepEqual(named(fx, "saveLast")[0].value, { boxes: 100_000, chunkSize: 100, checked: null, online: null });
  assert.equal(named(fx, "overview").length, 1, "no overview yet: fetch one");
  // The same dimensions again change nothing.
  const again = step(s, DIMS);
  assert.equal(again.state, s);
  assert.deepEqual(again.fx, []);
  // Nonsense is ignored.
  assert.equal(step(initialState(), { ...DIMS, chunkSize: 0 }).state.known, false);
});

test("a recent saved overview stands; an old one does not", () => {
  const body = { boxes: 100_000, start: 0, end: 100_000, region: 50_000, counts: [1, 2] };
  const fresh = run(initialState(), { ...DIMS, saved: { body, etag: "\"e\"", at: VIEW.epoch - 5_000 } });
  assert.deepEqual(fresh.state.overview.data.counts, [1, 2]);
  assert.equal(fresh.state.overview.fetchedAt, VIEW.now - 5_000);
  assert.equal(named(fresh.fx, "overview").length, 0, "not due yet");
  const old = run(initialState(), { ...DIMS, saved: { body, etag: "\"e\"", at: VIEW.epoch - 3_600_000 } });
  assert.equal(old.state.overview.data, null);
  assert.deepEqual(named(old.fx, "overview"), [{ fx: "overview", headers: {} }]);
});

test("a jump before the dimensions waits for them; the hash is used otherwise", () => {
  const early = run(initialState(), { type: "goto", index: 50_000 });
  assert.equal(early.state.pendingJump, 50_000);
  const { state: s, fx } = run(early.state, DIMS);
  assert.equal(s.pendingJump, null);
  assert.equal(s.highlight, 50_000);
  assert.equal(s.focusTarget, 50_000);
  assert.ok(s.visible.includes(500));
  assert.ok(named(fx, "scroll").at(-1).top > 0);
  const viaHash = run(initialState(), { ...DIMS, hash: 1234 });
  assert.equal(viaHash.state.highlight, 1234);
});

test("the first socket fetches every wanted chunk; before it, the first-fetch wait does", () => {
  const s = run(initialState(), DIMS).state;
  const a = run(s, live());
  assert.deepEqual(named(a.fx, "fetch"), [{ fx: "fetch", chunks: [0, 1] }]);
  assert.deepEqual(named(a.fx, "routes"), [{ fx: "routes", endpoint: "ws://a", endpoints: ["ws://a"] }]);
  assert.equal(named(run(a.state, live()).fx, "fetch").length, 0, "the same socket: no refetch");
  assert.equal(named(run(a.state, live(2)).fx, "fetch").length, 1, "a new socket: refetch");
  const w = run(s, { type: "firstFetchWait" });
  assert.deepEqual(named(w.fx, "fetch"), [{ fx: "fetch", chunks: [0, 1] }]);
  assert.equal(w.state.firstFetchWaitOver, true);
});

test("a status with a Hello sets the dimensions; losing the socket fails pending clicks", () => {
  const { state: s, fx } = run(initialState(), { ...VIEW, ...live(), hello: { boxes: 1000, chunk_size: 100 } });
  assert.equal(s.model.boxes, 1000);
  assert.equal(s.hub.state, "live");
  assert.ok(named(fx, "fetch").length > 0);
  const down = run(s, { type: "status", state: "reconnecting", endpoint: null, gen: 1 });
  assert.deepEqual(named(down.fx, "failPending"), [{ fx: "failPending", status: "disconnected" }]);
  assert.equal(named(down.fx, "routes").length, 0);
});

test("scrolling: the frame follows scrollTop, and a moved range debounces a subscription update", () => {
  let { state: s } = run(initialState(), DIMS, live());
  let r = run(s, { type: "frame", scrollTop: 0, now: 2_000 });
  s = r.state;
  assert.equal(named(r.fx, "subTimer").length, 1, "the first frame sets the range");
  s = run(s, { type: "subscribe" }).state;
  r = run(s, { type: "frame", scrollTop: 36 * 30, now: 3_000 });
  assert.equal(r.state.pos, 36 * 30);
  assert.deepEqual(named(r.fx, "subTimer"), [{ fx: "subTimer", wait: SUBSCRIBE_DEBOUNCE_MS }]);
  // Still scrolling: the wait shrinks so the update comes within SUBSCRIBE_MAX_WAIT_MS.
  r = run(r.state, { type: "frame", scrollTop: 36 * 60, now: 3_000 + SUBSCRIBE_MAX_WAIT_MS - 50 });
  assert.deepEqual(named(r.fx, "subTimer"), [{ fx: "subTimer", wait: 50 }]);
  r = run(r.state, { type: "subscribe" });
  assert.equal(r.state.subSince, null);
  assert.equal(r.state.viewMoved, true);
  assert.deepEqual(r.state.visible, [12, 13]);
  assert.deepEqual(r.state.wanted, [11, 12, 13, 14], "a margin once the view moved");
  assert.deepEqual(named(r.fx, "stale"), [], "chunks never loaded are not marked stale");
  assert.deepEqual(named(r.fx, "fetch")[0].chunks, [12, 13, 11, 14]);
});

test("chunks left behind go stale; beyond the cap the oldest are evicted", () => {
  const { state: s } = run(initialState(), DIMS, live());
  for (const c of [0, 1, 2]) load(s, c);
  for (let c = 100; c < 100 + MAX_KEPT_CHUNKS; c++) load(s, c);
  const r = run(s, { type: "goto", index: 50_000 });
  assert.deepEqual(named(r.fx, "stale"), [{ fx: "stale", chunks: [0, 1] }]);
  const evict = named(r.fx, "evict")[0].chunks;
  // The kept chunks plus the new wanted ones may not exceed the cap.
  assert.equal(s.model.chunks.size + r.state.wanted.length - evict.length, MAX_KEPT_CHUNKS);
  assert.deepEqual(evict.slice(0, 3), [0, 1, 2], "oldest first");
  assert.ok(!evict.some((c) => r.state.wanted.includes(c)));
});

test("a goto cancels a pending subscription timer and centres the box", () => {
  const { state: s } = run(initialState(), DIMS, live(), { type: "frame", scrollTop: 0, now: 1 });
  assert.notEqual(s.subSince, null);
  const r = run(s, { type: "goto", index: 20_000, focus: false });
  assert.equal(named(r.fx, "cancelSubTimer").length, 1);
  assert.equal(r.state.subSince, null);
  assert.equal(r.state.focusTarget, -1);
  assert.equal(r.state.highlight, 20_000);
  assert.ok(r.state.visible.includes(200));
});

test("the jump field: errors become notices, numbers set the hash and go", () => {
  const { state: s } = run(initialState(), DIMS);
  assert.deepEqual(step(s, { type: "jump", text: "abc" }).fx, [{ fx: "notice", text: "Enter a box number" }]);
  assert.match(step(s, { type: "jump", text: "100000" }).fx[0].text, /0 to 99,999/);
  const r = step(s, { type: "jump", text: "1,234" });
  assert.deepEqual(r.fx[0], { fx: "hash", index: 1234 });
  assert.equal(r.state.highlight, 1234);
});

test("arrow keys move focus from the box about to get it, and reveal it", () => {
  const { state: s } = run(initialState(), DIMS);
  assert.equal(arrowTarget(s, "ArrowDown", 5), 25);
  assert.equal(arrowTarget(s, "ArrowLeft", 0), null);
  assert.equal(arrowTarget(s, "Enter", 5), null);
  let r = run(s, { type: "key", key: "ArrowRight", from: 5 });
  assert.equal(r.state.focusTarget, 6);
  r = run(r.state, { type: "key", key: "ArrowRight", from: 5 });
  assert.equal(r.state.focusTarget, 7, "moves on from the pending target");
  r = run(r.state, { type: "focused" });
  assert.equal(r.state.focusTarget, -1);
  const down = run(s, { type: "key", key: "ArrowDown", from: 20 * 9 });
  assert.equal(down.state.pos, 36, "the row below the view is revealed");
  assert.deepEqual(named(down.fx, "scroll"), [{ fx: "scroll", top: 36 }]);
});

test("clicks: refused on unknown boxes and offline, else an id and a Set", () => {
  const { state: s } = run(initialState(), DIMS, live());
  const click = { type: "click", index: 3, checked: true, online: true, now: 10 };
  assert.deepEqual(step(s, click).fx, [], "chunk not loaded");
  load(s, 0);
  const r = step(s, click);
  assert.deepEqual(r.fx.slice(0, 2), [
    { fx: "begin", index: 3, checked: true, id: 1, at: 10 },
    { fx: "send", msg: { t: "set", id: 1, index: 3, checked: true } },
  ]);
  assert.equal(r.state.nextReq, 2);
  assert.deepEqual(step(s, { ...click, online: false }).fx, []);
  const down = run(s, { type: "status", state: "reconnecting", endpoint: null, gen: 1 }, { type: "network", ok: false }).state;
  assert.deepEqual(step(down, click).fx, [], "network down and no socket");
});

test("acks: a reverted click shows a notice, an applied one marks its chunk dirty", () => {
  const { state: s } = run(initialState(), DIMS);
  const bad = step(s, { type: "resolved", r: { index: 250, checked: true, status: "rate_limited", reverted: true }, status: "rate_limited" });
  assert.deepEqual(bad.fx.slice(0, 2), [
    { fx: "ack", index: 250, checked: true, status: "rate_limited" },
    { fx: "notice", text: NOTICES.rate_limited },
  ]);
  const odd = step(s, { type: "resolved", r: { index: 250, checked: true, status: "weird", reverted: true }, status: "weird" });
  assert.equal(odd.fx[1].text, "Change undone (weird)");
  const ok = step(s, { type: "resolved", r: { index: 250, checked: false, status: "applied", reverted: false }, status: "applied" });
  assert.deepEqual(ok.fx[1], { fx: "markDirty", chunk: 2 });
  assert.deepEqual(step(s, { type: "resolved", r: null, status: "applied" }).fx, [], "unknown request");
});

test("chunk data: a change keeps the density for the minimap; updates move the live total", () => {
  let { state: s } = run(initialState(), DIMS, live());
  const bytes = new Uint8Array(13);
  bytes[0] = 0b11;
  load(s, 1, 5, bytes);
  let r = run(s, { type: "changed", chunk: 1 });
  assert.equal(r.state.densities.get(1), 0.02);
  assert.equal(s.densities.size, 0, "the old state's map is untouched");
  assert.equal(r.state.minimapDirty, true);
  assert.deepEqual(named(r.fx, "markDirty"), [{ fx: "markDirty", chunk: 1 }]);
  s = run(r.state, { type: "stats", checked: 40, online: 3, now: 5_000 }).state;
  r = run(s, { type: "update", chunk: 1, r: "applied", before: 2, after: 3 });
  assert.equal(r.state.counters.checked, 41);
  assert.equal(r.state.countersDirty, true);
  r = run(s, { type: "update", chunk: 1, r: "refetch", before: 2, after: 2 });
  assert.deepEqual(r.fx, [{ fx: "fetch", chunks: [1] }]);
  assert.deepEqual(run(s, { type: "update", chunk: 1, r: "buffered", before: null, after: null }).fx, []);
});

test("versions and resync refetch only wanted chunks that need it", () => {
  const { state: s } = run(initialState(), DIMS, live());
  for (const c of [0, 1, 2, 3]) load(s, c, 5);
  const v = step(s, { type: "versions", first_chunk: 0, versions: [5, 9, 5, 9] });
  assert.deepEqual(v.fx, [{ fx: "fetch", chunks: [1] }], "3 is not wanted");
  const rs = step(s, { type: "resync", first_chunk: 1, count: 8 });
  assert.deepEqual(rs.fx, [{ fx: "fetch", chunks: [1] }]);
});

test("stats set the counters, save them, and start a due overview fetch", () => {
  let { state: s } = run(initialState(), DIMS, { type: "overviewDone" });
  s = { ...s, overview: { ...s.overview, fetchedAt: 0, checkedAtFetch: 0, etag: "\"v1\"", body: {} } };
  const r = step(s, { type: "stats", checked: 7, online: 2, now: 10_000 });
  assert.deepEqual(r.state.counters, { checked: 7, online: 2 });
  assert.deepEqual(named(r.fx, "overview"), [{ fx: "overview", headers: { "If-None-Match": "\"v1\"" } }]);
  assert.equal(r.state.overview.inFlight, true);
  assert.deepEqual(named(r.fx, "saveLast")[0].value, { boxes: 100_000, chunkSize: 100, checked: 7, online: 2 });
  assert.equal(named(step(r.state, { type: "stats", checked: 9, online: 2, now: 20_000 }).fx, "overview").length, 0, "one in flight");
});

test("an overview answer is kept when it fits the grid", () => {
  const { state: s } = run(initialState(), DIMS);
  const body = { boxes: 100_000, start: 0, end: 100_000, region: 100_000, counts: [5] };
  const r = step(s, { type: "overview", body, etag: "\"x\"", epoch: 42 });
  assert.equal(r.state.overview.fetches, 1);
  assert.equal(r.state.minimapDirty, true);
  assert.deepEqual(named(r.fx, "saveOverview"), [{ fx: "saveOverview", value: { body, etag: "\"x\"", at: 42 } }]);
  assert.equal(step(s, { type: "overview", body: { ...body, boxes: 5 }, etag: null, epoch: 1 }).state, s);
});

test("/api/stats: an answer sets dimensions; a failure falls back to the last visit, offline", () => {
  const ok = run(initialState(), { ...VIEW, type: "httpStats", stats: { boxes: 1000, chunk_size: 100, checked: 4 }, online: true });
  assert.equal(ok.state.model.boxes, 1000);
  assert.equal(ok.state.counters.checked, 4);
  const last = { boxes: 2000, chunkSize: 100, checked: 8, online: 1 };
  const off = run(initialState(), { ...VIEW, type: "httpStats", stats: null, online: true, last });
  assert.equal(off.state.networkDown, true);
  assert.equal(off.state.model.boxes, 2000);
  assert.deepEqual(off.state.counters, { checked: 8, online: 1 });
  assert.equal(isOffline(off.state, true), true);
  assert.equal(connectionView(off.state, true).label, "Offline");
  const back = run(off.state, { type: "online" });
  assert.equal(back.state.networkDown, false);
  assert.deepEqual(back.fx.slice(0, 1), [{ fx: "kick" }]);
});

test("connection view and cell flags", () => {
  let { state: s } = run(initialState(), DIMS, live());
  assert.deepEqual(connectionView(s, true), { connection: "connecting", offline: false, endpoint: "ws://a", label: "Live" });
  for (const c of s.visible) load(s, c);
  assert.equal(connectionView(s, true).connection, "live");
  assert.equal(connectionView(s, false).connection, "offline");
  s.model.beginSet(3, true, 1, 0);
  s = run(s, { type: "goto", index: 4 }).state;
  const flags = cellFlags(s, false);
  assert.equal(flags(3), CHECKED | PENDING);
  assert.equal(flags(4), HIGHLIGHT);
  assert.equal(flags(5000), UNKNOWN);
  assert.equal(cellFlags(s, true)(5), DISABLED);
});

test("frames: counters once, the minimap at most every MINIMAP_MS, first-paint marks once", () => {
  const { state: s } = run(initialState(), DIMS, live());
  let r = run(s, { type: "frame", scrollTop: 0, now: 1_000 });
  assert.equal(named(r.fx, "counters").length, 1);
  assert.equal(named(r.fx, "minimap").length, 1);
  assert.deepEqual(named(r.fx, "mark").map((f) => f.name), ["checkraft:grid"]);
  for (const c of r.state.visible) load(r.state, c);
  r = run(r.state, { type: "changed", chunk: 0 }, { type: "frame", scrollTop: 0, now: 1_050 });
  assert.deepEqual(named(r.fx, "mark").map((f) => f.name), ["checkraft:state"]);
  assert.equal(named(r.fx, "counters").length, 0);
  assert.equal(named(r.fx, "minimap").length, 0);
  assert.deepEqual(named(r.fx, "minimapLater"), [{ fx: "minimapLater", wait: MINIMAP_MS }]);
  r = run(r.state, { type: "frame", scrollTop: 0, now: 1_060 });
  assert.equal(named(r.fx, "minimapLater").length, 0, "one timer at a time");
  r = run(r.state, { type: "minimapTimer" }, { type: "frame", scrollTop: 0, now: 1_200 });
  assert.equal(named(r.fx, "minimap").length, 1);
  assert.equal(named(r.fx, "mark").length, 0);
  assert.equal(r.state.minimapDirty, false);
});

test("a resize to fewer columns keeps the first visible box in view", () => {
  let { state: s } = run(initialState(), DIMS);
  s = run(s, { type: "frame", scrollTop: 36 * 100, now: 1 }).state; // first visible box 2000
  const r = run(s, { type: "resize", width: 360, height: 360 }); // narrow: 30 px cells, 12 columns
  assert.equal(r.state.L.cols, 12);
  assert.equal(Math.floor(r.state.pos / r.state.L.rowHeight) * 12, Math.floor(2000 / 12) * 12);
  assert.equal(named(r.fx, "layout")[0].resetPool, true);
  assert.equal(step(initialState(), { type: "resize", width: 1, height: 1 }).fx.length, 0, "nothing before the dimensions");
});

test("the mode and the actual scrollTop are recorded", () => {
  const s = initialState();
  assert.equal(step(s, { type: "mode", mode: "shared-worker" }).state.mode, "shared-worker");
  assert.equal(step(s, { type: "scrolled", top: 12 }).state.lastScroll, 12);
  assert.equal(step(s, { type: "nonsense" }).state, s);
});
