// The page's state as one value, and its transitions as pure functions:
// `step(state, event)` returns `{state, fx}`, the next state and the
// effects the shell (main.js) carries out, in order (DOM writes, socket
// and fetch requests, storage, timers). Nothing here touches the DOM,
// the network, storage or the clock: time, sizes and storage reads come
// in with the events. test/page-state.test.js tests it.
//
// The grid's data (chunk contents, click overlays) lives in the
// `GridModel` the state points to (state.js). The fetcher and the shell
// write chunk contents into it and then report them here as events; a
// step only reads it, and asks for its changes (stale marks, eviction,
// clicks) as effects.
//
// Effects (`fx`), each `{fx: name, ...}`:
//   render                      queue a frame
//   model                       the grid changed size: reset the fetcher for state.model
//   layout {L, resetPool}       size the grid for L (a new pool if resetPool)
//   scroll {top}                set the viewport's scrollTop
//   saveLast {value}            remember dimensions and counters
//   subscribe {chunks}          the socket's subscription set
//   stale {chunks}              mark these copies stale
//   fetch {chunks}              (re)fetch these chunks
//   evict {chunks}              forget these chunks' contents
//   subTimer {wait} / cancelSubTimer
//   overview {headers}          fetch /api/overview (then "overview"/"overviewDone")
//   saveOverview {value}
//   minimap {range} / minimapLater {wait}
//   counters {checked, online}  show the counters
//   mark {name}                 a performance mark at the next paint
//   begin {index, checked, id, at} / send {msg}   a click goes out
//   ack {index, checked, status} notice {text} markDirty {chunk}
//   routes {endpoint, endpoints} hash {index} kick

import { GridModel, versionShowsGap } from "./state.js";
import { connectionState, evictable, planSubscriptions } from "./subscriptions.js";
import { parseJump, revealPos } from "./jump.js";
import { OVERVIEW_MAX_MS, overviewDue, parseOverview } from "./overview.js";
import {
  CHECKED, DISABLED, HIGHLIGHT, PENDING, UNKNOWN,
  computeLayout, nextPos, posForIndex, rowOf, samePool, scrollForPos, visibleRange,
} from "./viewplan.js";

export const SUBSCRIBE_DEBOUNCE_MS = 150;
export const SUBSCRIBE_MAX_WAIT_MS = 600;
export const MARGIN_CHUNKS = 1;
export const MAX_SUBSCRIBED = 32;
export const MAX_KEPT_CHUNKS = 256;
export const MINIMAP_MS = 150;

export const NOTICES = {
  rate_limited: "Too fast — slow down",
  unavailable: "Server unavailable, try again",
  out_of_range: "That box is out of range",
  invalid: "The server refused that change",
  timeout: "No answer from the server — change undone",
  disconnected: "Not connected — change undone",
};

const LABELS = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };
const ARROWS = { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down" };

/** The state of a page that knows nothing yet. */
export function initialState() {
  return {
    model: new GridModel(0, 1),
    known: false, // dimensions known
    L: null, // layout
    pos: 0, // content position (px)
    lastScroll: 0,
    highlight: -1,
    focusTarget: -1,
    pendingJump: null,
    wanted: [], // subscribed chunks
    visible: [], // visible chunks
    // The first box in view when subscriptions were first planned; the
    // margin's chunks are subscribed (and read) only once the view leaves
    // it: a page that is only looked at reads just the chunks it shows.
    restingFirst: null,
    viewMoved: false,
    subSince: null, // when the pending subscription update was first asked for (null: none)
    hub: { state: "connecting", endpoint: null, gen: 0 },
    mode: "per-tab",
    networkDown: false,
    firstFetchWaitOver: false,
    counters: { checked: null, online: null },
    countersDirty: true,
    densities: new Map(), // chunk -> density, kept after a chunk is dropped
    minimapDirty: true,
    minimapAt: -Infinity,
    minimapWaiting: false,
    lastRange: { first: 0, last: -1 },
    painted: { grid: false, state: false },
    nextReq: 1,
    overview: { data: null, etag: null, body: null, fetchedAt: null, checkedAtFetch: null, inFlight: false, fetches: 0 },
  };
}

// ---------------------------------------------------------------- derived views

/** Whether the page counts as offline (no writes, the banner shows). */
export function isOffline(s, online) {
  return online === false || (s.networkDown && s.hub.state !== "live");
}

/** Whether every visible chunk is loaded and current. */
export function visibleLoaded(s) {
  if (!s.known) return false;
  for (const c of s.visible) {
    const e = s.model.chunks.get(c);
    if (!e || !e.loaded || e.stale) return false;
  }
  return true;
}

/** What <html> and the header show about the connection. */
export function connectionView(s, online) {
  const offline = isOffline(s, online);
  const connection = connectionState({
    online: online !== false,
    networkDown: s.networkDown,
    hubState: s.hub.state,
    visibleLoaded: visibleLoaded(s),
  });
  // The label follows the socket only (no flicker while chunks load).
  return { connection, offline, endpoint: s.hub.endpoint, label: LABELS[offline ? "offline" : s.hub.state] };
}

/** The cell flags of box `index` (viewplan's CHECKED | PENDING | ...). */
export function cellFlags(s, offline) {
  const model = s.model;
  const base = offline ? DISABLED : 0;
  return (index) => {
    let f = base;
    if (model.isChecked(index)) f |= CHECKED;
    if (model.pending.size > 0 && model.isPending(index)) f |= PENDING;
    if (!model.isLoaded(index)) f |= UNKNOWN;
    if (index === s.highlight) f |= HIGHLIGHT;
    return f;
  };
}

/** The box an arrow key moves to from box `from`, or null (not an arrow, or off the grid). */
export function arrowTarget(s, key, from) {
  if (!ARROWS[key] || !s.L) return null;
  const delta = { left: -1, right: 1, up: -s.L.cols, down: s.L.cols }[ARROWS[key]];
  const to = from + delta;
  return to < 0 || to >= s.model.boxes ? null : to;
}

export function isArrow(key) {
  return key in ARROWS;
}

// ---------------------------------------------------------------- steps

/**
 * The page's transition function.
 * @param {ReturnType<typeof initialState>} s
 * @param {{type: string}} ev
 * @returns {{state: ReturnType<typeof initialState>, fx: object[]}}
 */
export function step(s, ev) {
  const fx = [];
  const next = (STEPS[ev.type] ?? ((x) => x))(s, ev, fx);
  return { state: next, fx };
}

const STEPS = {
  dims: dimensions,
  resize: relayout,
  frame,
  scrolled: (s, ev) => (s.lastScroll === ev.top ? s : { ...s, lastScroll: ev.top }),
  focused: (s) => ({ ...s, focusTarget: -1 }),
  subscribe: (s, ev, fx) => updateSubscriptions({ ...s, subSince: null }, fx),
  firstFetchWait(s, ev, fx) {
    s = { ...s, firstFetchWaitOver: true };
    if (s.hub.gen === 0) requestChunks(s, s.wanted, fx);
    return s;
  },
  goto: (s, ev, fx) => goTo(s, ev.index, ev.focus !== false, fx),
  jump(s, ev, fx) {
    const j = parseJump(ev.text, s.known ? s.model.boxes : null);
    if (j.error) {
      fx.push({ fx: "notice", text: j.error });
      return s;
    }
    fx.push({ fx: "hash", index: j.index });
    return goTo(s, j.index, true, fx);
  },
  key(s, ev, fx) {
    // Keys can come faster than frames: move from the box about to get focus.
    const to = arrowTarget(s, ev.key, s.focusTarget >= 0 ? s.focusTarget : ev.from);
    if (to === null) return s;
    s = reveal(s, to, fx);
    fx.push({ fx: "render" });
    return { ...s, focusTarget: to };
  },
  click(s, ev, fx) {
    if (isOffline(s, ev.online) || !s.model.isLoaded(ev.index)) return s;
    const id = s.nextReq;
    fx.push({ fx: "begin", index: ev.index, checked: ev.checked, id, at: ev.now });
    fx.push({ fx: "send", msg: { t: "set", id, index: ev.index, checked: ev.checked } });
    fx.push({ fx: "render" });
    return { ...s, nextReq: id + 1 };
  },
  // A click resolved (by its Ack or locally): `r` is GridModel.resolveSet's answer.
  resolved(s, { r, status }, fx) {
    if (!r) return s;
    fx.push({ fx: "ack", index: r.index, checked: r.checked, status: r.status });
    if (r.reverted) fx.push({ fx: "notice", text: NOTICES[status] ?? `Change undone (${status})` });
    else fx.push({ fx: "markDirty", chunk: s.model.chunkOf(r.index) });
    fx.push({ fx: "render" });
    return s;
  },
  changed: (s, ev, fx) => chunkChanged(s, ev.chunk, fx),
  network(s, { ok }, fx) {
    if (s.networkDown !== ok) return s;
    fx.push({ fx: "render" });
    return { ...s, networkDown: !ok };
  },
  online(s, ev, fx) {
    fx.push({ fx: "kick" }, { fx: "fetch", chunks: [...s.wanted] }, { fx: "render" });
    return { ...s, networkDown: false };
  },
  mode: (s, ev) => ({ ...s, mode: ev.mode }),
  status,
  update,
  versions(s, m, fx) {
    const out = [];
    m.versions.forEach((v, i) => {
      const c = m.first_chunk + i;
      const e = s.model.chunks.get(c);
      if (e && s.wanted.includes(c) && !e.fetching && versionShowsGap(e, v)) out.push(c);
    });
    if (out.length) fx.push({ fx: "fetch", chunks: out });
    return s;
  },
  resync(s, m, fx) {
    const out = s.wanted.filter((c) => c >= m.first_chunk && c < m.first_chunk + m.count);
    if (out.length) fx.push({ fx: "fetch", chunks: out });
    return s;
  },
  stats(s, m, fx) {
    s = { ...s, counters: { checked: m.checked, online: m.online }, countersDirty: true };
    s = overviewTick(s, { now: m.now }, fx);
    fx.push({ fx: "saveLast", value: { boxes: s.model.boxes, chunkSize: s.model.chunkSize, ...s.counters } });
    fx.push({ fx: "render" });
    return s;
  },
  // /api/stats answered (`stats`) or failed (`last`: the offline record).
  httpStats(s, ev, fx) {
    if (ev.stats) {
      s = { ...s, networkDown: false };
      if (s.counters.checked === null) s = { ...s, counters: { ...s.counters, checked: ev.stats.checked }, countersDirty: true };
      s = dimensions(s, { ...ev, boxes: ev.stats.boxes, chunkSize: ev.stats.chunk_size }, fx);
    } else {
      if (ev.online === false) s = { ...s, networkDown: true };
      if (ev.last && !s.known) {
        s = { ...s, networkDown: true };
        s = withCounters(s, ev.last);
        s = dimensions(s, { ...ev, boxes: ev.last.boxes, chunkSize: ev.last.chunkSize }, fx);
      }
    }
    fx.push({ fx: "render" });
    return s;
  },
  // The last visit's counters (offline.js loadLast).
  lastSeen: (s, ev) => withCounters(s, ev.last),
  overviewTick,
  overview(s, ev, fx) {
    const data = parseOverview(ev.body);
    if (!data || data.boxes !== s.model.boxes) return s;
    const overview = { ...s.overview, data, body: ev.body, etag: ev.etag, fetches: s.overview.fetches + 1 };
    fx.push({ fx: "saveOverview", value: { body: ev.body, etag: ev.etag, at: ev.epoch } });
    fx.push({ fx: "render" });
    return { ...s, overview, minimapDirty: true };
  },
  overviewDone: (s) => ({ ...s, overview: { ...s.overview, inFlight: false } }),
};

function withCounters(s, last) {
  return { ...s, counters: { checked: last.checked ?? null, online: last.online ?? null }, countersDirty: true };
}

/**
 * The grid's dimensions are (perhaps newly) known. The event carries what
 * the step needs: `width`/`height` (the viewport's), `hash` (the box the
 * URL names, or null), `saved` (the last visit's overview, offline.js),
 * `now` (performance.now()) and `epoch` (Date.now()).
 */
function dimensions(s, ev, fx) {
  const { boxes, chunkSize } = ev;
  if (!Number.isFinite(boxes) || !Number.isFinite(chunkSize) || chunkSize <= 0) return s;
  if (s.known && boxes === s.model.boxes && chunkSize === s.model.chunkSize) return s;
  s = { ...s, model: new GridModel(boxes, chunkSize), densities: new Map(), wanted: [], known: true };
  fx.push({ fx: "model" });
  fx.push({ fx: "saveLast", value: { boxes, chunkSize, checked: s.counters.checked, online: s.counters.online } });
  s = relayout(s, ev, fx);
  const target = s.pendingJump ?? ev.hash ?? null;
  s = { ...s, pendingJump: null };
  if (target !== null) s = goTo(s, target, true, fx);
  s = updateSubscriptions(s, fx);
  // The last visit's overview, if recent, stands until the next is due.
  const saved = ev.saved ?? null;
  const savedData = saved ? parseOverview(saved.body) : null;
  const age = saved ? ev.epoch - saved.at : Infinity;
  if (savedData && savedData.boxes === boxes && age >= 0 && age < OVERVIEW_MAX_MS) {
    s = { ...s, overview: { ...s.overview, data: savedData, body: saved.body, etag: saved.etag, checkedAtFetch: s.counters.checked, fetchedAt: ev.now - age } };
  } else {
    s = { ...s, overview: { ...s.overview, data: null, fetchedAt: null } };
  }
  return overviewTick(s, ev, fx);
}

/** A new layout for the viewport's `width` x `height`, keeping the first visible box in view. */
function relayout(s, { width, height }, fx) {
  if (!s.known) return s;
  const old = s.L;
  const anchor = old ? Math.floor(s.pos / old.rowHeight) * old.cols : 0; // first visible box
  const narrow = width < 500;
  const L = computeLayout({ width, height, boxes: s.model.boxes, cell: narrow ? 30 : 36, rowHeight: narrow ? 30 : 36 });
  let pos = s.pos;
  if (old && old.cols !== L.cols) pos = Math.min(L.maxPos, rowOf(L, anchor) * L.rowHeight);
  pos = Math.min(pos, L.maxPos);
  fx.push({ fx: "layout", L, resetPool: !samePool(old, L) });
  fx.push({ fx: "scroll", top: scrollForPos(L, pos) });
  fx.push({ fx: "render" });
  return { ...s, L, pos, lastScroll: scrollForPos(L, pos), minimapDirty: true };
}

/** Scrolls so box `index` is centred, highlights it and (optionally) focuses it. */
function goTo(s, index, focus, fx) {
  if (!Number.isFinite(index)) return s;
  if (!s.known || !s.L) return { ...s, pendingJump: index };
  index = Math.min(s.model.boxes - 1, Math.max(0, Math.floor(index)));
  const pos = posForIndex(s.L, index);
  fx.push({ fx: "scroll", top: scrollForPos(s.L, pos) });
  s = { ...s, pos, lastScroll: scrollForPos(s.L, pos), highlight: index, focusTarget: focus ? index : s.focusTarget };
  if (s.subSince !== null) fx.push({ fx: "cancelSubTimer" });
  s = updateSubscriptions({ ...s, subSince: null }, fx);
  fx.push({ fx: "render" });
  return s;
}

/** Scrolls the least needed for box `index`'s row to be fully visible. */
function reveal(s, index, fx) {
  const pos = revealPos(s.L, s.pos, index);
  if (pos === null) return s;
  fx.push({ fx: "scroll", top: scrollForPos(s.L, pos) }, { fx: "render" });
  return { ...s, pos, lastScroll: scrollForPos(s.L, pos) };
}

/** Subscribes to the chunks in view (plus a margin once the view has
 * moved), fetches what that adds, and forgets chunks beyond the cap. */
function updateSubscriptions(s, fx) {
  if (!s.known || !s.L) return s;
  const range = visibleRange(s.L, s.pos);
  let { restingFirst, viewMoved } = s;
  if (restingFirst === null) restingFirst = range.first;
  else if (range.first !== restingFirst) viewMoved = true;
  const plan = planSubscriptions({
    range,
    chunkSize: s.model.chunkSize,
    nChunks: s.model.nChunks,
    margin: viewMoved ? MARGIN_CHUNKS : 0,
    max: MAX_SUBSCRIBED,
    wanted: s.wanted,
    chunks: s.model.chunks,
  });
  s = { ...s, restingFirst, viewMoved, visible: plan.visible };
  if (!plan.changed) return s;
  // Chunks we stop subscribing to get no more updates: their copy goes stale.
  if (plan.stale.length) fx.push({ fx: "stale", chunks: plan.stale });
  s = { ...s, wanted: plan.wanted };
  fx.push({ fx: "subscribe", chunks: plan.wanted });
  const fetched = requestChunks(s, plan.fetch, fx);
  // Drops the content of chunks far from view (their density stays for the
  // minimap), counting the entries the fetches are about to add.
  const added = fetched.filter((c) => c >= 0 && c < s.model.nChunks && !s.model.chunks.has(c)).length;
  const drop = evictable(s.model.chunks, plan.wanted, MAX_KEPT_CHUNKS - added);
  if (drop.length) fx.push({ fx: "evict", chunks: drop });
  fx.push({ fx: "render" });
  return s;
}

/** Fetches chunks, except before the first socket is live: a fetch then
 * would be repeated once it is (changes between a fetch and the
 * subscription are never sent), so the live status fetches every wanted
 * chunk instead. After the first-fetch wait without a socket, fetch anyway. */
function requestChunks(s, chunks, fx) {
  if (s.hub.gen === 0 && !s.firstFetchWaitOver) return [];
  if (chunks.length) fx.push({ fx: "fetch", chunks: [...chunks] });
  return chunks;
}

/** Chunk `c`'s content changed (the model holds it). */
function chunkChanged(s, c, fx) {
  const e = s.model.chunks.get(c);
  let densities = s.densities;
  if (e && e.loaded && e.density !== null && densities.get(c) !== e.density) {
    densities = new Map(densities).set(c, e.density);
  }
  fx.push({ fx: "markDirty", chunk: c }, { fx: "render" });
  return { ...s, densities, minimapDirty: true };
}

/** A hub status message. */
function status(s, msg, fx) {
  const wasGen = s.hub.gen;
  s = { ...s, hub: { state: msg.state, endpoint: msg.endpoint, gen: msg.gen } };
  if (msg.state === "live") fx.push({ fx: "routes", endpoint: msg.endpoint, endpoints: msg.endpoints });
  if (msg.hello) s = dimensions(s, { ...msg, boxes: msg.hello.boxes, chunkSize: msg.hello.chunk_size }, fx);
  if (msg.state === "live" && msg.gen !== wasGen) {
    // A new socket (or the first): changes before its subscriptions were
    // never sent to us, so refetch (If-None-Match keeps it cheap).
    if (s.wanted.length) fx.push({ fx: "fetch", chunks: [...s.wanted] });
  }
  if (msg.state !== "live") fx.push({ fx: "failPending", status: "disconnected" });
  fx.push({ fx: "render" });
  return s;
}

/** A server Update, already applied to the model: `r` is state.receiveUpdate's
 * answer, `before`/`after` the chunk's checked count around it (before: null
 * if it was not loaded). */
function update(s, { chunk, r, before, after }, fx) {
  if (r === "refetch") {
    fx.push({ fx: "fetch", chunks: [chunk] });
    return s;
  }
  if (r !== "applied") return s;
  // Keep the total live between Stats (every few seconds) for the changes
  // this page sees; the next Stats corrects the rest.
  if (before !== null && s.counters.checked !== null) {
    s = { ...s, counters: { ...s.counters, checked: Math.max(0, s.counters.checked + after - before) }, countersDirty: true };
  }
  return chunkChanged(s, chunk, fx);
}

/** Starts an overview fetch when due (overview.overviewDue). */
function overviewTick(s, { now }, fx) {
  const ov = s.overview;
  if (!s.known || !overviewDue({ ...ov, checked: s.counters.checked, now })) return s;
  const headers = ov.etag && ov.body ? { "If-None-Match": ov.etag } : {};
  fx.push({ fx: "overview", headers });
  return { ...s, overview: { ...ov, inFlight: true, fetchedAt: now, checkedAtFetch: s.counters.checked } };
}

/**
 * A frame: the scroll position moved to `scrollTop` (or not); what else is
 * due at `now` (the minimap, the counters, the first-paint marks, the
 * subscription timer when the visible range moved).
 */
function frame(s, { scrollTop, now }, fx) {
  if (s.known && s.L) {
    if (scrollTop !== s.lastScroll) s = { ...s, pos: nextPos(s.L, s.pos, s.lastScroll, scrollTop), lastScroll: scrollTop };
    s = firstPaints(s, fx);
    const range = visibleRange(s.L, s.pos);
    if (range.first !== s.lastRange.first || range.last !== s.lastRange.last) {
      s = { ...s, lastRange: range, minimapDirty: true };
      // Debounced while scrolling, but never later than SUBSCRIBE_MAX_WAIT_MS after the first change.
      const since = s.subSince ?? now;
      const wait = Math.max(0, Math.min(SUBSCRIBE_DEBOUNCE_MS, since + SUBSCRIBE_MAX_WAIT_MS - now));
      fx.push({ fx: "subTimer", wait });
      s = { ...s, subSince: since };
    }
    // The minimap is redrawn at most every MINIMAP_MS (not worth a frame while scrolling).
    if (s.minimapDirty) {
      if (now - s.minimapAt < MINIMAP_MS) {
        if (!s.minimapWaiting) {
          fx.push({ fx: "minimapLater", wait: MINIMAP_MS });
          s = { ...s, minimapWaiting: true };
        }
      } else {
        fx.push({ fx: "minimap", range });
        s = { ...s, minimapAt: now, minimapDirty: false };
      }
    }
  }
  if (s.countersDirty) {
    fx.push({ fx: "counters", ...s.counters });
    s = { ...s, countersDirty: false };
  }
  return s;
}

STEPS.minimapTimer = (s, ev, fx) => {
  fx.push({ fx: "render" });
  return { ...s, minimapWaiting: false };
};

/** Performance marks (read by the e2e budget test): the first frame with
 * boxes on screen, and the first with their real state. */
function firstPaints(s, fx) {
  const p = s.painted;
  if (p.state) return s;
  let grid = p.grid;
  let state = false;
  if (!grid && s.model.boxes > 0) {
    grid = true;
    fx.push({ fx: "mark", name: "checkraft:grid" });
  }
  if (s.visible.length > 0 && s.visible.every((c) => s.model.chunks.get(c)?.loaded)) {
    state = true;
    fx.push({ fx: "mark", name: "checkraft:state" });
  }
  return grid === p.grid && !state ? s : { ...s, painted: { grid, state } };
}
