// The page's own record of the last known state, for an offline reload:
// current chunk bitsets (server bits plus acked own clicks, with their
// version in `X-Checkraft-Seq`) written into the Cache API under the chunk
// URL, debounced (at most DEBOUNCE_MS after a change, and on pagehide), and
// the grid's dimensions and counters in localStorage. The service worker
// (sw.js) shares the chunk cache, so its 200 bodies land in the same place.
// Entries the page writes carry no ETag: they are never used for
// If-None-Match, only read when the network is gone.

export const CHUNK_CACHE = "checkraft-chunks-v1";
export const DEBOUNCE_MS = 300;
const DIMS_KEY = "checkraft:last";
const OVERVIEW_KEY = "checkraft:overview";

export class OfflineStore {
  /** @param {() => import("./state.js").GridModel} getModel */
  constructor(getModel) {
    this.getModel = getModel;
    this.dirty = new Set();
    this.timer = null;
  }

  markDirty(c) {
    this.dirty.add(c);
    if (!this.timer) this.timer = setTimeout(() => this.flush(), DEBOUNCE_MS);
  }

  /** Writes every dirty chunk now. */
  async flush() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.dirty.size === 0 || typeof caches === "undefined") return;
    const model = this.getModel();
    const todo = [...this.dirty];
    this.dirty.clear();
    let cache;
    try {
      cache = await caches.open(CHUNK_CACHE);
    } catch {
      return;
    }
    await Promise.all(todo.map((c) => {
      const bits = model.persistedBits(c);
      if (!bits) return null;
      const entry = model.chunks.get(c);
      const headers = {
        "Content-Type": "application/octet-stream",
        "X-Checkraft-Seq": String(Math.max(0, entry.version)),
        "X-Checkraft-Saved": String(Date.now()),
      };
      return cache.put(chunkUrl(c), new Response(bits, { headers })).catch(() => null);
    }));
  }

  /** The saved bitset of chunk `c`: {bytes, seq} or null. */
  async load(c) {
    if (typeof caches === "undefined") return null;
    const cache = await caches.open(CHUNK_CACHE);
    const res = await cache.match(chunkUrl(c), { ignoreVary: true, ignoreSearch: true });
    if (!res || !res.ok) return null;
    return {
      bytes: new Uint8Array(await res.arrayBuffer()),
      seq: Number(res.headers.get("X-Checkraft-Seq") ?? "0"),
    };
  }
}

function chunkUrl(c) {
  return new URL(`/api/chunks/${c}`, location.origin).href;
}

/** Saves dimensions and counters: {boxes, chunkSize, checked, online}. */
export function saveLast(v) {
  try {
    localStorage.setItem(DIMS_KEY, JSON.stringify(v));
  } catch {
    /* storage full or denied: offline reload will lack counters */
  }
}

export function loadLast() {
  try {
    const v = JSON.parse(localStorage.getItem(DIMS_KEY) ?? "null");
    if (v && Number.isFinite(v.boxes) && Number.isFinite(v.chunkSize) && v.chunkSize > 0) return v;
  } catch {
    /* ignore */
  }
  return null;
}

/** Saves the last overview: {body, etag, at (ms since the epoch)}. */
export function saveOverview(v) {
  try {
    localStorage.setItem(OVERVIEW_KEY, JSON.stringify(v));
  } catch {
    /* storage full or denied: the next visit fetches it */
  }
}

export function loadOverview() {
  try {
    const v = JSON.parse(localStorage.getItem(OVERVIEW_KEY) ?? "null");
    if (v && v.body && Number.isFinite(v.at)) return v;
  } catch {
    /* ignore */
  }
  return null;
}
