// The page: wires the pure model (state.js), view plan (viewplan.js) and
// decisions (subscriptions.js: what to subscribe, fetch and forget, and
// the connection state; jump.js: the jump field and reveal; overview.js:
// the minimap's overview and when to refetch it; routes.js: where reads
// go; ssr.js: the server-rendered page's data) to the DOM (grid.js,
// minimap.js), the socket hub link (connection.js), chunk fetching
// (chunks.js) and the offline record (offline.js).
//
// Flow: events (scroll, resize, hub messages, fetch results, clicks) only
// change state and call `invalidate()`; one requestAnimationFrame callback
// then computes the plan, diffs it against what is on screen and applies
// the patches, redraws the minimap and counters, and updates <html>'s
// data-connection. Subscriptions follow the visible chunks (plus a margin
// once the view has moved),
// debounced while scrolling. The first HTML may already hold the grid's
// top (gateway/src/ssr.rs): the view adopts those elements.

import { GridModel, receiveFetch, receiveUpdate, versionShowsGap } from "./state.js";
import { connectionState, evictable, planSubscriptions } from "./subscriptions.js";
import { parseJump, revealPos } from "./jump.js";
import { parseSsr } from "./ssr.js";
import {
  CHECKED, DISABLED, HIGHLIGHT, PENDING, UNKNOWN,
  computeLayout, diffPlans, nextPos, planView, posForIndex, rowOf, samePool, scrollForPos, visibleRange,
} from "./viewplan.js";
import { GridView } from "./grid.js";
import { Minimap } from "./minimap.js";
import { ChunkFetcher } from "./chunks.js";
import { Routes } from "./routes.js";
import { OVERVIEW_MAX_MS, overviewDue, parseOverview } from "./overview.js";
import { OfflineStore, loadLast, loadOverview, saveLast, saveOverview } from "./offline.js";
import { ENDPOINT_KEY, openLink } from "./connection.js";

const ACK_TIMEOUT_MS = 15_000; // the gateway answers "unavailable" after 10 s
const SUBSCRIBE_DEBOUNCE_MS = 150;
const SUBSCRIBE_MAX_WAIT_MS = 600;
const MARGIN_CHUNKS = 1;
const MAX_SUBSCRIBED = 32;
const MAX_KEPT_CHUNKS = 256;
const NOTICE_MS = 3_500;
const MAX_ACKS_KEPT = 200; // window.__checkraft.acks keeps the latest only
const STATS_FALLBACK_MS = 2_000;
const FIRST_FETCH_WAIT_MS = 800;
const MINIMAP_MS = 150;

const NOTICES = {
  rate_limited: "Too fast — slow down",
  unavailable: "Server unavailable, try again",
  out_of_range: "That box is out of range",
  invalid: "The server refused that change",
  timeout: "No answer from the server — change undone",
  disconnected: "Not connected — change undone",
};

const $ = (sel) => document.querySelector(sel);
const root = document.documentElement;
const viewport = $("#viewport");
const gridEl = $("#grid");
const view = new GridView(viewport, gridEl);
const minimap = new Minimap($("#minimap"), (i) => goTo(i, { focus: false }));
const checkedEl = $("#checked-count");
const onlineEl = $("#online-count");
const noticeEl = $("#notice");
const bannerEl = $("#offline-banner");

// ---------------------------------------------------------------- state

let model = new GridModel(0, 1);
let known = false; // dimensions known
let L = null; // layout
let pos = 0; // content position (px)
let lastScroll = 0;
let applied = null; // the plan on screen
let highlight = -1;
let focusTarget = -1;
let pendingJump = null;
let wanted = []; // subscribed chunks
let visibleChunks = [];
let hub = { state: "connecting", endpoint: null, gen: 0 };
let mode = "per-tab";
let networkDown = false;
let counters = { checked: null, online: null };
let nextReq = 1;
let subTimer = null;
let noticeTimer = null;
const densities = new Map(); // chunk -> density, kept after a chunk is dropped
// The whole-grid overview for the minimap (overview.js).
const overview = { data: null, etag: null, body: null, fetchedAt: null, checkedAtFetch: null, inFlight: false, fetches: 0 };
let minimapDirty = true;
let countersDirty = true;

const store = new OfflineStore(() => model);
const routes = new Routes(location.origin);
// A front whose CSP does not list the gateways (Caddyfile's
// CHECKRAFT_CONNECT_SRC unset) blocks direct reads: stop trying them.
document.addEventListener("securitypolicyviolation", (ev) => {
  if (ev.effectiveDirective !== "connect-src") return;
  try {
    const url = new URL(ev.blockedURI);
    for (const base of routes.order()) if (base && url.href.startsWith(`${base}/`)) routes.block(base);
  } catch {
    /* not a URL */
  }
});
const fetcher = new ChunkFetcher(model, {
  onRoute(base) {
    const http = hook.http;
    http.last = base || location.origin;
    http.counts[http.last] = (http.counts[http.last] ?? 0) + 1;
    if (root.dataset.httpEndpoint !== http.last) root.dataset.httpEndpoint = http.last;
  },
  onChange(c) {
    chunkChanged(c);
  },
  onNetwork(ok) {
    if (networkDown === ok) {
      networkDown = !ok;
      invalidate();
    }
  },
  wanted: (c) => wanted.includes(c),
  store,
}, routes);

const hook = {
  // The latest MAX_ACKS_KEPT Ack outcomes of this tab's clicks.
  acks: [],
  // Where chunk reads went: the last base, and a count per base.
  http: { last: null, counts: {} },
  // Frame counter; set `perf.log = []` to record [planMs, applyMs, patches] per frame.
  perf: { frames: 0, log: null },
  // The minimap's density at box `i` (-1: unknown), and overview fetches.
  minimapDensity: (i) => minimap.densityAt(i),
  overviewFetches: () => overview.fetches,
  state: () => ({
    connection: root.dataset.connection,
    endpoint: root.dataset.endpoint ?? null,
    mode,
    boxes: model.boxes,
    chunkSize: model.chunkSize,
    subscribed: [...wanted],
  }),
};
window.__checkraft = hook;

function chunkChanged(c) {
  const e = model.chunks.get(c);
  if (e && e.loaded && e.density !== null) densities.set(c, e.density);
  minimapDirty = true;
  store.markDirty(c);
  invalidate();
}

function setDimensions(boxes, chunkSize) {
  if (!Number.isFinite(boxes) || !Number.isFinite(chunkSize) || chunkSize <= 0) return;
  if (known && boxes === model.boxes && chunkSize === model.chunkSize) return;
  model = new GridModel(boxes, chunkSize);
  fetcher.reset(model);
  densities.clear();
  wanted = [];
  known = true;
  saveLast({ boxes, chunkSize, checked: counters.checked, online: counters.online });
  relayout();
  const target = pendingJump ?? hashIndex();
  pendingJump = null;
  if (target !== null) goTo(target, { focus: true });
  updateSubscriptions();
  // The last visit's overview, if recent, stands until the next is due.
  const saved = loadOverview();
  const savedData = saved ? parseOverview(saved.body) : null;
  const age = saved ? Date.now() - saved.at : Infinity;
  if (savedData && savedData.boxes === boxes && age >= 0 && age < OVERVIEW_MAX_MS) {
    Object.assign(overview, { data: savedData, body: saved.body, etag: saved.etag, checkedAtFetch: counters.checked });
    overview.fetchedAt = performance.now() - age;
  } else {
    overview.data = null;
    overview.fetchedAt = null;
  }
  maybeLoadOverview();
}

// ---------------------------------------------------------------- layout and frame

function relayout() {
  if (!known) return;
  const anchor = L ? Math.floor(pos / L.rowHeight) * L.cols : 0; // first visible box
  const narrow = viewport.clientWidth < 500;
  const next = computeLayout({
    width: viewport.clientWidth,
    height: viewport.clientHeight,
    boxes: model.boxes,
    cell: narrow ? 30 : 36,
    rowHeight: narrow ? 30 : 36,
  });
  const old = L;
  L = next;
  view.applyLayout(L);
  rememberView(L);
  if (!samePool(old, L)) applied = null;
  if (old && old.cols !== L.cols) pos = Math.min(L.maxPos, rowOf(L, anchor) * L.rowHeight);
  pos = Math.min(pos, L.maxPos);
  setScroll(scrollForPos(L, pos));
  minimapDirty = true;
  invalidate();
}

/** Tells the server the layout, so its next rendered page has as many
 * columns and rows as this one (gateway/src/ssr.rs). */
function rememberView(L) {
  const value = `${L.cols}x${Math.max(1, L.poolRows - 2 * L.overscan)}`;
  if (document.cookie.includes(`checkraft-view=${value}`)) return;
  document.cookie = `checkraft-view=${value}; path=/; max-age=31536000; samesite=lax`;
}

function setScroll(s) {
  viewport.scrollTop = s;
  lastScroll = viewport.scrollTop;
}

/** Queues one frame. Hidden or occluded tabs get no animation frames, so a
 * slow timer stands in for them (whichever fires first renders). */
const FALLBACK_FRAME_MS = 250;
let frameQueued = false;
let frameToken = 0;
function invalidate() {
  if (frameQueued) return;
  frameQueued = true;
  const token = ++frameToken;
  const run = () => { if (frameQueued && token === frameToken) frame(); };
  requestAnimationFrame(run);
  setTimeout(run, FALLBACK_FRAME_MS);
}

let frameOffline = false; // isOffline(), once per frame

function flagsOf(index) {
  let f = frameOffline ? DISABLED : 0;
  if (model.isChecked(index)) f |= CHECKED;
  if (model.pending.size > 0 && model.isPending(index)) f |= PENDING;
  if (!model.isLoaded(index)) f |= UNKNOWN;
  if (index === highlight) f |= HIGHLIGHT;
  return f;
}

let lastRange = { first: 0, last: -1 };

/** Performance marks (read by the e2e budget test, cheap otherwise): the
 * first frame with boxes on screen, and the first with their real state,
 * each taken at the paint that follows the frame. */
const painted = { grid: false, state: false };
function markFirstPaints(plan) {
  if (painted.state || !plan) return;
  const mark = (name) => requestAnimationFrame(() => performance.mark(name));
  if (!painted.grid && model.boxes > 0) {
    painted.grid = true;
    mark("checkraft:grid");
  }
  if (visibleChunks.length > 0 && visibleChunks.every((c) => model.chunks.get(c)?.loaded)) {
    painted.state = true;
    mark("checkraft:state");
  }
}

function frame() {
  frameQueued = false;
  frameOffline = isOffline();
  if (known && L) {
    const s = viewport.scrollTop;
    if (s !== lastScroll) {
      pos = nextPos(L, pos, lastScroll, s);
      lastScroll = s;
    }
    const t0 = performance.now();
    const plan = planView(L, pos, flagsOf, lastScroll);
    const patches = diffPlans(applied, plan);
    const t1 = performance.now();
    view.apply(patches);
    applied = plan;
    markFirstPaints(plan);
    const t2 = performance.now();
    hook.perf.frames++;
    if (hook.perf.log) hook.perf.log.push([Math.round(t1 - t0), Math.round(t2 - t1), patches.length]);
    if (focusTarget >= 0) {
      const el = view.inputFor(focusTarget);
      if (el) {
        if (view.tabStop && view.tabStop !== el) view.tabStop.tabIndex = -1;
        el.tabIndex = 0;
        view.tabStop = el;
        el.focus({ preventScroll: true });
        focusTarget = -1;
      }
    }
    const range = visibleRange(L, pos);
    if (L.poolRows > 0) view.setTabStop(range.first, rowOf(L, range.first) % L.poolRows, range.first % L.cols);
    if (range.first !== lastRange.first || range.last !== lastRange.last) {
      lastRange = range;
      minimapDirty = true;
      scheduleSubscriptions();
    }
    if (minimapDirty) drawMinimap(range);
  }
  if (countersDirty) {
    countersDirty = false;
    showCount(checkedEl, counters.checked);
    showCount(onlineEl, counters.online);
  }
  updateConnection();
}

/** Redraws the minimap, at most every MINIMAP_MS (it is not worth a frame while scrolling). */
let minimapAt = 0;
let minimapTimer = null;
function drawMinimap(range) {
  const now = performance.now();
  if (now - minimapAt < MINIMAP_MS) {
    if (!minimapTimer) minimapTimer = setTimeout(() => { minimapTimer = null; invalidate(); }, MINIMAP_MS);
    return;
  }
  minimapAt = now;
  minimapDirty = false;
  minimap.draw({ boxes: model.boxes, nChunks: model.nChunks, densities, overview: overview.data, ...range });
}

function showCount(el, v) {
  if (v === null || v === undefined) {
    el.removeAttribute("data-value");
    el.textContent = "–";
  } else {
    el.dataset.value = String(v);
    el.textContent = v.toLocaleString("en-US");
  }
}

function isOffline() {
  return navigator.onLine === false || (networkDown && hub.state !== "live");
}

function updateConnection() {
  const offline = isOffline();
  const c = connectionState({
    online: navigator.onLine !== false,
    networkDown,
    hubState: hub.state,
    visibleLoaded: visibleLoaded(),
  });
  if (root.dataset.connection !== c) root.dataset.connection = c;
  if (hub.endpoint && root.dataset.endpoint !== hub.endpoint) root.dataset.endpoint = hub.endpoint;
  if (bannerEl.hidden === offline) bannerEl.hidden = !offline;
  gridEl.setAttribute("aria-readonly", offline ? "true" : "false");
  // The label follows the socket only (no flicker while chunks load).
  const shown = offline ? "offline" : hub.state;
  const text = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" }[shown];
  const label = $("#connection-label");
  if (label.textContent !== text) label.textContent = text;
}

function visibleLoaded() {
  if (!known) return false;
  for (const c of visibleChunks) {
    const e = model.chunks.get(c);
    if (!e || !e.loaded || e.stale) return false;
  }
  return true;
}

// ---------------------------------------------------------------- subscriptions

/** Debounced while scrolling, but never later than SUBSCRIBE_MAX_WAIT_MS after the first change. */
let subSince = 0;
function scheduleSubscriptions() {
  const now = performance.now();
  if (!subTimer) subSince = now;
  clearTimeout(subTimer);
  const wait = Math.max(0, Math.min(SUBSCRIBE_DEBOUNCE_MS, subSince + SUBSCRIBE_MAX_WAIT_MS - now));
  subTimer = setTimeout(() => {
    subTimer = null;
    updateSubscriptions();
  }, wait);
}

/** The first box in view when subscriptions were first planned; the
 * margin's chunks are subscribed (and read) only once the view leaves it:
 * a page that is only looked at reads just the chunks it shows. */
let restingFirst = null;
let viewMoved = false;

function updateSubscriptions() {
  if (!known || !L) return;
  const range = visibleRange(L, pos);
  if (restingFirst === null) restingFirst = range.first;
  else if (range.first !== restingFirst) viewMoved = true;
  const plan = planSubscriptions({
    range,
    chunkSize: model.chunkSize,
    nChunks: model.nChunks,
    margin: viewMoved ? MARGIN_CHUNKS : 0,
    max: MAX_SUBSCRIBED,
    wanted,
    chunks: model.chunks,
  });
  visibleChunks = plan.visible;
  if (!plan.changed) return;
  // Chunks we stop subscribing to get no more updates: their copy goes stale.
  for (const c of plan.stale) model.chunks.get(c).stale = true;
  wanted = plan.wanted;
  link.subscribe(wanted);
  for (const c of plan.fetch) requestChunk(c);
  evict();
  invalidate();
}

/** Fetches chunk `c`, except before the first socket is live: a fetch then
 * would be repeated once it is (changes between a fetch and the
 * subscription are never sent), so the live status fetches every wanted
 * chunk instead. After FIRST_FETCH_WAIT_MS without a socket, fetch anyway. */
function requestChunk(c) {
  if (hub.gen === 0 && !firstFetchWaitOver) return;
  fetcher.request(c);
}
let firstFetchWaitOver = false;
setTimeout(() => {
  firstFetchWaitOver = true;
  if (hub.gen === 0) for (const c of wanted) requestChunk(c);
}, FIRST_FETCH_WAIT_MS);

/** Drops the content of chunks far from view (their density stays for the minimap). */
function evict() {
  for (const c of evictable(model.chunks, wanted, MAX_KEPT_CHUNKS)) model.chunks.delete(c);
}

// ---------------------------------------------------------------- hub messages

function onHubMessage(msg) {
  switch (msg.t) {
    case "status": {
      const wasGen = hub.gen;
      hub = { state: msg.state, endpoint: msg.endpoint, gen: msg.gen };
      if (msg.state === "live") {
        routes.update(msg.endpoint, msg.endpoints);
        try {
          localStorage.setItem(ENDPOINT_KEY, msg.endpoint);
        } catch {
          /* storage denied: the next visit races two gateways */
        }
      }
      if (msg.hello) setDimensions(msg.hello.boxes, msg.hello.chunk_size);
      if (msg.state === "live" && msg.gen !== wasGen) {
        // A new socket (or the first): changes before its subscriptions
        // were never sent to us, so refetch (If-None-Match keeps it cheap).
        for (const c of wanted) fetcher.request(c);
      }
      if (msg.state !== "live") failAllPending("disconnected");
      invalidate();
      break;
    }
    case "server":
      onServer(msg.m);
      break;
    case "ack":
      resolve(msg.id, msg.status, msg.seq);
      break;
    default:
      break;
  }
}

function onServer(m) {
  switch (m.type) {
    case "update": {
      if (!wanted.includes(m.chunk)) return;
      const e = model.chunks.get(m.chunk);
      if (!e) return;
      const before = e.loaded ? Math.round(e.density * e.len) : null;
      const r = receiveUpdate(e, m);
      if (r === "applied") {
        // Keep the total live between Stats (every few seconds) for the
        // changes this page sees; the next Stats corrects the rest.
        if (before !== null && counters.checked !== null) {
          counters.checked = Math.max(0, counters.checked + Math.round(e.density * e.len) - before);
          countersDirty = true;
        }
        chunkChanged(m.chunk);
      }
      else if (r === "refetch") fetcher.request(m.chunk);
      break;
    }
    case "versions":
      m.versions.forEach((v, i) => {
        const c = m.first_chunk + i;
        const e = model.chunks.get(c);
        if (e && wanted.includes(c) && !e.fetching && versionShowsGap(e, v)) fetcher.request(c);
      });
      break;
    case "resync":
      for (const c of wanted) if (c >= m.first_chunk && c < m.first_chunk + m.count) fetcher.request(c);
      break;
    case "stats":
      counters = { checked: m.checked, online: m.online };
      countersDirty = true;
      maybeLoadOverview();
      saveLast({ boxes: model.boxes, chunkSize: model.chunkSize, ...counters });
      invalidate();
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------- clicks

function onToggle(index, checked) {
  if (isOffline() || !model.isLoaded(index)) return false;
  const id = nextReq++;
  model.beginSet(index, checked, id, performance.now());
  link.send({ t: "set", id, index, checked });
  invalidate();
  return true;
}

function resolve(id, status, seq) {
  const r = model.resolveSet(id, status, seq);
  if (!r) return;
  hook.acks.push({ index: r.index, checked: r.checked, status: r.status });
  if (hook.acks.length > MAX_ACKS_KEPT) hook.acks.splice(0, hook.acks.length - MAX_ACKS_KEPT);
  if (r.reverted) showNotice(NOTICES[status] ?? `Change undone (${status})`);
  else store.markDirty(model.chunkOf(r.index));
  invalidate();
}

function failAllPending(status) {
  for (const id of model.pendingRequests()) resolve(id, status, 0);
}

setInterval(() => {
  for (const id of model.expiredRequests(performance.now() - ACK_TIMEOUT_MS)) resolve(id, "timeout", 0);
}, 1_000);

gridEl.addEventListener("click", (ev) => {
  const t = ev.target;
  if (!(t instanceof HTMLInputElement) || t.dataset.index === undefined) return;
  const index = Number(t.dataset.index);
  if (!onToggle(index, t.checked)) {
    ev.preventDefault();
    t.checked = model.isChecked(index);
    return;
  }
  // Show the pending state now, not at the next frame; the next diff
  // re-syncs this cell whatever happens meanwhile.
  t.dataset.pending = "true";
  forgetCell(index);
});

/** Makes the next diff rewrite the cell of box `index` (the DOM was touched directly). */
function forgetCell(index) {
  if (!applied || !L) return;
  const row = rowOf(L, index);
  const slot = row % applied.poolRows;
  if (applied.slotRow[slot] === row) applied.cellFlags[slot * applied.cols + (index % L.cols)] = 255;
}

gridEl.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if (!(t instanceof HTMLInputElement) || t.dataset.index === undefined || !L) return;
  // Keys can come faster than frames: move from the box about to get focus.
  const index = focusTarget >= 0 ? focusTarget : Number(t.dataset.index);
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -L.cols, ArrowDown: L.cols }[ev.key];
  if (step === undefined) return;
  ev.preventDefault();
  const to = index + step;
  if (to < 0 || to >= model.boxes) return;
  reveal(to);
  focusTarget = to;
  invalidate();
});

function showNotice(text) {
  noticeEl.textContent = text;
  noticeEl.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { noticeEl.hidden = true; }, NOTICE_MS);
}

// ---------------------------------------------------------------- navigation

function hashIndex() {
  const m = /^#(\d+)$/.exec(location.hash);
  return m ? Number(m[1]) : null;
}

/** Scrolls so box `index` is centred, highlights it and (optionally) focuses it. */
function goTo(index, { focus = true } = {}) {
  if (!Number.isFinite(index)) return;
  if (!known || !L) {
    pendingJump = index;
    return;
  }
  index = Math.min(model.boxes - 1, Math.max(0, Math.floor(index)));
  pos = posForIndex(L, index);
  setScroll(scrollForPos(L, pos));
  highlight = index;
  if (focus) focusTarget = index;
  clearTimeout(subTimer);
  subTimer = null;
  updateSubscriptions();
  invalidate();
}

/** Scrolls the least needed for box `index`'s row to be fully visible. */
function reveal(index) {
  const next = revealPos(L, pos, index);
  if (next === null) return;
  pos = next;
  setScroll(scrollForPos(L, pos));
  invalidate();
}

$("#jump-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const jump = parseJump($("#jump-input").value, known ? model.boxes : null);
  if (jump.error) {
    showNotice(jump.error);
    return;
  }
  const n = jump.index;
  history.replaceState(null, "", `#${n}`);
  goTo(n);
});

addEventListener("hashchange", () => {
  const n = hashIndex();
  if (n !== null) goTo(n);
});

viewport.addEventListener("scroll", invalidate, { passive: true });
new ResizeObserver(() => relayout()).observe(viewport);

// ---------------------------------------------------------------- connectivity

addEventListener("online", () => {
  networkDown = false;
  link.kick();
  for (const c of wanted) fetcher.request(c);
  invalidate();
});
addEventListener("offline", invalidate);
addEventListener("pagehide", () => { store.flush(); });
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") store.flush();
});

const link = openLink(onHubMessage, (m) => {
  mode = m;
  root.dataset.socketMode = m;
});

/** Fetches the overview when due (overviewDue): routed like chunk reads,
 * revalidated by ETag. */
async function maybeLoadOverview() {
  const now = performance.now();
  if (!known || !overviewDue({ ...overview, checked: counters.checked, now })) return;
  overview.inFlight = true;
  overview.fetchedAt = now;
  overview.checkedAtFetch = counters.checked;
  try {
    const headers = overview.etag && overview.body ? { "If-None-Match": overview.etag } : {};
    const r = await fetcher.routedFetch("/api/overview", headers);
    if (r && r.status === 200) {
      const body = await r.json();
      const data = parseOverview(body);
      if (data && data.boxes === model.boxes) {
        overview.data = data;
        overview.body = body;
        overview.etag = r.headers.get("ETag");
        overview.fetches++;
        saveOverview({ body, etag: overview.etag, at: Date.now() });
        minimapDirty = true;
        invalidate();
      }
    }
  } catch {
    /* the next Stats or the minute timer tries again */
  } finally {
    overview.inFlight = false;
  }
}
setInterval(maybeLoadOverview, 15_000);

async function loadStats() {
  try {
    const r = await fetch("/api/stats", { cache: "no-store" });
    if (!r.ok) throw new Error(`stats: ${r.status}`);
    const s = await r.json();
    networkDown = false;
    if (counters.checked === null) {
      counters.checked = s.checked;
      countersDirty = true;
    }
    setDimensions(s.boxes, s.chunk_size);
  } catch {
    if (navigator.onLine === false) networkDown = true;
    const last = loadLast();
    if (last && !known) {
      networkDown = true;
      counters = { checked: last.checked ?? null, online: last.online ?? null };
      countersDirty = true;
      setDimensions(last.boxes, last.chunkSize);
    }
  }
  invalidate();
}

root.dataset.connection = "connecting";

/** Seeds the model with the server-rendered chunks: the boxes the page
 * shows are then known at once (the socket's refetch on going live still
 * revalidates them). */
function adoptSsr(d) {
  setDimensions(d.boxes, d.chunkSize);
  for (const c of d.chunks) {
    const entry = model.chunk(c.chunk);
    if (receiveFetch(entry, { status: 200, bytes: c.bytes, seq: c.seq, etag: c.etag }).changed) chunkChanged(c.chunk);
    // A page the Service Worker kept is as old as its first load: the
    // offline record may be newer (and is all there is offline).
    store.load(c.chunk).then((saved) => {
      const now = model.chunks.get(c.chunk);
      if (!saved || now !== entry || saved.seq <= entry.version || entry.fetching) return;
      if (receiveFetch(entry, { status: 200, bytes: saved.bytes, seq: saved.seq, etag: null }).changed) chunkChanged(c.chunk);
    }).catch(() => {});
  }
}

// A returning browser knows the grid's dimensions (offline.js): it draws
// at once and lets the socket's Hello confirm them and Stats bring the
// counts, without an HTTP round trip; it asks /api/stats only if the
// socket is not live soon. A first visit asks at once.
const lastSeen = loadLast();
const ssr = parseSsr(document.getElementById("ssr-chunks")?.textContent ?? null);
if (ssr) {
  adoptSsr(ssr);
  if (lastSeen) {
    counters = { checked: lastSeen.checked ?? null, online: lastSeen.online ?? null };
    countersDirty = true;
  }
  setTimeout(() => { if (hub.state !== "live") loadStats(); }, STATS_FALLBACK_MS);
} else if (lastSeen && Number.isFinite(lastSeen.boxes) && Number.isFinite(lastSeen.chunkSize)) {
  counters = { checked: lastSeen.checked ?? null, online: lastSeen.online ?? null };
  countersDirty = true;
  setDimensions(lastSeen.boxes, lastSeen.chunkSize);
  setTimeout(() => { if (hub.state !== "live") loadStats(); }, STATS_FALLBACK_MS);
} else {
  loadStats();
}
invalidate();

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {});
}
