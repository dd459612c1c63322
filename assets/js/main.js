// The page's shell. It owns the DOM and one current state: every event
// (scroll, resize, hub messages, fetch results, clicks, keys, timers) goes
// through the pure `step` of page-state.js, which returns the next state
// and the effects to carry out; this file carries them out (grid.js and
// minimap.js for the DOM, connection.js for the socket hub link,
// chunks.js for chunk reads, offline.js for the offline record,
// routes.js for where reads go, header.js for the rest of the page). One
// requestAnimationFrame callback
// plans the view (viewplan.js), diffs it against what is on screen and
// applies only the patches. The first HTML may already hold the grid's
// top (gateway/src/ssr.rs, ssr.js): the view adopts those elements.

import { receiveFetch, receiveUpdate } from "./state.js";
import { parseSsr } from "./ssr.js";
import { diffPlans, planView, rowOf, visibleRange } from "./viewplan.js";
import { GridView } from "./grid.js";
import { Minimap } from "./minimap.js";
import { ChunkFetcher } from "./chunks.js";
import { Routes } from "./routes.js";
import { OfflineStore, loadLast, loadOverview, saveLast, saveOverview } from "./offline.js";
import { ENDPOINT_KEY, openLink } from "./connection.js";
import { Header } from "./header.js";
import { cellFlags, connectionView, initialState, isArrow, isOffline, step } from "./page-state.js";

const ACK_TIMEOUT_MS = 15_000; // the gateway answers "unavailable" after 10 s
const MAX_ACKS_KEPT = 200; // window.__checkraft.acks keeps the latest only
const STATS_FALLBACK_MS = 2_000;
const FIRST_FETCH_WAIT_MS = 800;
/** Hidden or occluded tabs get no animation frames: a slow timer stands in. */
const FALLBACK_FRAME_MS = 250;

const $ = (sel) => document.querySelector(sel);
const root = document.documentElement;
const viewport = $("#viewport");
const gridEl = $("#grid");
const view = new GridView(viewport, gridEl);
const minimap = new Minimap($("#minimap"), (index) => dispatch({ type: "goto", index, focus: false }));
const header = new Header(document);

// ---------------------------------------------------------------- the only mutable bindings

let state = initialState();
let applied = null; // the view plan on screen
let frameQueued = false;
let frameSeq = 0; // tells a queued frame's two triggers from an older frame's
let subTimer = null; // the debounced subscription update

const store = new OfflineStore(() => state.model);
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

const hook = {
  // The latest MAX_ACKS_KEPT Ack outcomes of this tab's clicks.
  acks: [],
  // Where chunk reads went: the last base, and a count per base.
  http: { last: null, counts: {} },
  // Frame counter; set `perf.log = []` to record [planMs, applyMs, patches] per frame.
  perf: { frames: 0, log: null },
  // The minimap's density at box `i` (-1: unknown), and overview fetches.
  minimapDensity: (i) => minimap.densityAt(i),
  overviewFetches: () => state.overview.fetches,
  state: () => ({
    connection: root.dataset.connection,
    endpoint: root.dataset.endpoint ?? null,
    mode: state.mode,
    boxes: state.model.boxes,
    chunkSize: state.model.chunkSize,
    subscribed: [...state.wanted],
  }),
};
window.__checkraft = hook;

const fetcher = new ChunkFetcher(state.model, {
  onRoute(base) {
    const http = hook.http;
    http.last = base || location.origin;
    http.counts[http.last] = (http.counts[http.last] ?? 0) + 1;
    if (root.dataset.httpEndpoint !== http.last) root.dataset.httpEndpoint = http.last;
  },
  onChange: (chunk) => dispatch({ type: "changed", chunk }),
  onNetwork: (ok) => dispatch({ type: "network", ok }),
  wanted: (c) => state.wanted.includes(c),
  store,
}, routes);

// ---------------------------------------------------------------- events in, effects out

/** Steps the state by `ev` and carries out the effects; returns them. */
function dispatch(ev) {
  const r = step(state, ev);
  state = r.state;
  for (const f of r.fx) EFFECTS[f.fx](f);
  return r.fx;
}

/** What a step that may learn the grid's dimensions needs to know. */
function context(ev) {
  const m = /^#(\d+)$/.exec(location.hash);
  return {
    ...ev, width: viewport.clientWidth, height: viewport.clientHeight, hash: m ? Number(m[1]) : null,
    saved: loadOverview(), now: performance.now(), epoch: Date.now(),
  };
}

const EFFECTS = {
  render: invalidate,
  model: () => fetcher.reset(state.model),
  layout({ L, resetPool }) {
    view.applyLayout(L);
    header.rememberView(L);
    if (resetPool) applied = null;
  },
  scroll({ top }) {
    viewport.scrollTop = top;
    dispatch({ type: "scrolled", top: viewport.scrollTop });
  },
  saveLast: ({ value }) => saveLast(value),
  subscribe: ({ chunks }) => link.subscribe(chunks),
  stale: ({ chunks }) => chunks.forEach((c) => { state.model.chunks.get(c).stale = true; }),
  fetch: ({ chunks }) => chunks.forEach((c) => fetcher.request(c)),
  evict: ({ chunks }) => chunks.forEach((c) => state.model.chunks.delete(c)),
  subTimer({ wait }) {
    clearTimeout(subTimer);
    subTimer = setTimeout(() => { subTimer = null; dispatch({ type: "subscribe" }); }, wait);
  },
  cancelSubTimer: () => { clearTimeout(subTimer); subTimer = null; },
  overview: ({ headers }) => loadOverviewNow(headers),
  saveOverview: ({ value }) => saveOverview(value),
  minimap({ range }) {
    const m = state.model;
    minimap.draw({ boxes: m.boxes, nChunks: m.nChunks, densities: state.densities, overview: state.overview.data, ...range });
  },
  minimapLater: ({ wait }) => setTimeout(() => dispatch({ type: "minimapTimer" }), wait),
  counters: (f) => header.counters(f),
  mark: ({ name }) => requestAnimationFrame(() => performance.mark(name)),
  begin: ({ index, checked, id, at }) => state.model.beginSet(index, checked, id, at),
  send: ({ msg }) => link.send(msg),
  ack({ index, checked, status }) {
    hook.acks.push({ index, checked, status });
    if (hook.acks.length > MAX_ACKS_KEPT) hook.acks.splice(0, hook.acks.length - MAX_ACKS_KEPT);
  },
  notice: ({ text }) => header.showNotice(text),
  markDirty: ({ chunk }) => store.markDirty(chunk),
  failPending: ({ status }) => {
    for (const id of state.model.pendingRequests()) resolve(id, status, 0);
  },
  routes({ endpoint, endpoints }) {
    routes.update(endpoint, endpoints);
    try {
      localStorage.setItem(ENDPOINT_KEY, endpoint);
    } catch {
      /* storage denied: the next visit races two gateways */
    }
  },
  hash: ({ index }) => history.replaceState(null, "", `#${index}`),
  kick: () => link.kick(),
};

function resolve(id, status, seq) {
  dispatch({ type: "resolved", r: state.model.resolveSet(id, status, seq), status });
}

// ---------------------------------------------------------------- the frame

/** Queues one frame (an animation frame, or the fallback timer: whichever fires first). */
function invalidate() {
  if (frameQueued) return;
  frameQueued = true;
  const token = ++frameSeq;
  const run = () => { if (frameQueued && token === frameSeq) frame(); };
  requestAnimationFrame(run);
  setTimeout(run, FALLBACK_FRAME_MS);
}

function frame() {
  frameQueued = false;
  const online = navigator.onLine;
  dispatch({ type: "frame", scrollTop: viewport.scrollTop, now: performance.now() });
  const s = state;
  if (s.known && s.L) {
    const t0 = performance.now();
    const plan = planView(s.L, s.pos, cellFlags(s, isOffline(s, online)), s.lastScroll);
    const patches = diffPlans(applied, plan);
    const t1 = performance.now();
    view.apply(patches);
    applied = plan;
    const t2 = performance.now();
    hook.perf.frames++;
    if (hook.perf.log) hook.perf.log.push([Math.round(t1 - t0), Math.round(t2 - t1), patches.length]);
    const el = s.focusTarget >= 0 ? view.inputFor(s.focusTarget) : null;
    if (el) {
      if (view.tabStop && view.tabStop !== el) view.tabStop.tabIndex = -1;
      el.tabIndex = 0;
      view.tabStop = el;
      el.focus({ preventScroll: true });
      dispatch({ type: "focused" });
    }
    const range = visibleRange(s.L, s.pos);
    if (s.L.poolRows > 0) view.setTabStop(range.first, rowOf(s.L, range.first) % s.L.poolRows, range.first % s.L.cols);
  }
  header.connection(connectionView(state, online));
}

// ---------------------------------------------------------------- DOM and hub events

gridEl.addEventListener("click", (ev) => {
  const t = ev.target;
  if (!(t instanceof HTMLInputElement) || t.dataset.index === undefined) return;
  const index = Number(t.dataset.index);
  const fx = dispatch({ type: "click", index, checked: t.checked, online: navigator.onLine, now: performance.now() });
  if (!fx.some((f) => f.fx === "begin")) {
    ev.preventDefault();
    t.checked = state.model.isChecked(index);
    return;
  }
  // Show the pending state now, not at the next frame; and make the next
  // diff rewrite this cell whatever happens meanwhile.
  t.dataset.pending = "true";
  const L = state.L;
  if (!applied || !L) return;
  const row = rowOf(L, index);
  const slot = row % applied.poolRows;
  if (applied.slotRow[slot] === row) applied.cellFlags[slot * applied.cols + (index % L.cols)] = 255;
});

gridEl.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if (!(t instanceof HTMLInputElement) || t.dataset.index === undefined || !state.L || !isArrow(ev.key)) return;
  ev.preventDefault();
  dispatch({ type: "key", key: ev.key, from: Number(t.dataset.index) });
});

$("#jump-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  dispatch({ type: "jump", text: $("#jump-input").value });
});

addEventListener("hashchange", () => {
  const m = /^#(\d+)$/.exec(location.hash);
  if (m) dispatch({ type: "goto", index: Number(m[1]) });
});

viewport.addEventListener("scroll", invalidate, { passive: true });
new ResizeObserver(() => dispatch({ type: "resize", width: viewport.clientWidth, height: viewport.clientHeight })).observe(viewport);

addEventListener("online", () => dispatch({ type: "online" }));
addEventListener("offline", invalidate);
addEventListener("pagehide", () => { store.flush(); });
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") store.flush();
});

function onHubMessage(msg) {
  if (msg.t === "status") dispatch(msg.hello ? context({ ...msg, type: "status" }) : { ...msg, type: "status" });
  else if (msg.t === "ack") resolve(msg.id, msg.status, msg.seq);
  else if (msg.t === "server") onServer(msg.m);
}

function onServer(m) {
  if (m.type === "update") {
    if (!state.wanted.includes(m.chunk)) return;
    const e = state.model.chunks.get(m.chunk);
    if (!e) return;
    const before = e.loaded ? Math.round(e.density * e.len) : null;
    const r = receiveUpdate(e, m);
    dispatch({ type: "update", chunk: m.chunk, r, before, after: e.loaded ? Math.round(e.density * e.len) : null });
  } else if (m.type === "versions" || m.type === "resync") {
    dispatch(m);
  } else if (m.type === "stats") {
    dispatch({ type: "stats", checked: m.checked, online: m.online, now: performance.now() });
  }
}

const link = openLink(onHubMessage, (mode) => {
  dispatch({ type: "mode", mode });
  root.dataset.socketMode = mode;
});

// ---------------------------------------------------------------- timers and HTTP

setInterval(() => {
  for (const id of state.model.expiredRequests(performance.now() - ACK_TIMEOUT_MS)) resolve(id, "timeout", 0);
}, 1_000);
setTimeout(() => dispatch({ type: "firstFetchWait" }), FIRST_FETCH_WAIT_MS);
setInterval(() => dispatch({ type: "overviewTick", now: performance.now() }), 15_000);

/** Fetches the overview (routed like chunk reads, revalidated by ETag). */
async function loadOverviewNow(headers) {
  try {
    const r = await fetcher.routedFetch("/api/overview", headers);
    if (r && r.status === 200) {
      const body = await r.json();
      dispatch({ type: "overview", body, etag: r.headers.get("ETag"), epoch: Date.now() });
    }
  } catch {
    /* the next Stats or the timer tries again */
  } finally {
    dispatch({ type: "overviewDone" });
  }
}

async function loadStats() {
  let stats = null;
  try {
    const r = await fetch("/api/stats", { cache: "no-store" });
    if (!r.ok) throw new Error(`stats: ${r.status}`);
    stats = await r.json();
  } catch {
    /* offline: the last visit's record stands in */
  }
  dispatch(context({ type: "httpStats", stats, online: navigator.onLine, last: stats ? null : loadLast() }));
}

const statsFallback = () => setTimeout(() => { if (state.hub.state !== "live") loadStats(); }, STATS_FALLBACK_MS);

// ---------------------------------------------------------------- start

root.dataset.connection = "connecting";

// A returning browser knows the grid's dimensions (offline.js): it draws
// at once and lets the socket's Hello confirm them and Stats bring the
// counts, without an HTTP round trip; it asks /api/stats only if the
// socket is not live soon. A first visit asks at once.
const lastSeen = loadLast();
const ssr = parseSsr(document.getElementById("ssr-chunks")?.textContent ?? null);
if (ssr) {
  adoptSsr(ssr);
  if (lastSeen) dispatch({ type: "lastSeen", last: lastSeen });
  statsFallback();
} else if (lastSeen && Number.isFinite(lastSeen.boxes) && Number.isFinite(lastSeen.chunkSize)) {
  dispatch({ type: "lastSeen", last: lastSeen });
  dispatch(context({ type: "dims", boxes: lastSeen.boxes, chunkSize: lastSeen.chunkSize }));
  statsFallback();
} else {
  loadStats();
}
invalidate();

/** Seeds the model with the server-rendered chunks: the boxes the page
 * shows are then known at once (the socket's refetch on going live still
 * revalidates them). */
function adoptSsr(d) {
  dispatch(context({ type: "dims", boxes: d.boxes, chunkSize: d.chunkSize }));
  for (const c of d.chunks) {
    const model = state.model;
    const entry = model.chunk(c.chunk);
    if (receiveFetch(entry, { status: 200, bytes: c.bytes, seq: c.seq, etag: c.etag }).changed) dispatch({ type: "changed", chunk: c.chunk });
    // A page the Service Worker kept is as old as its first load: the
    // offline record may be newer (and is all there is offline).
    store.load(c.chunk).then((saved) => {
      if (!saved || state.model.chunks.get(c.chunk) !== entry || saved.seq <= entry.version || entry.fetching) return;
      if (receiveFetch(entry, { status: 200, bytes: saved.bytes, seq: saved.seq, etag: null }).changed) dispatch({ type: "changed", chunk: c.chunk });
    }).catch(() => {});
  }
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {});
}
