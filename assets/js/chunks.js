// Chunk fetching over HTTP (`/api/chunks/{c}`), routed by routes.js: to
// the gateway the socket hub chose, then the other gateways, then the
// page's own origin, moving on at a network error or a 5xx. On the
// origin the kept ETag goes out as `If-None-Match` with the kept body, so
// an unchanged chunk costs a 304; on a gateway (another origin) the
// browser's HTTP cache revalidates instead, so no CORS preflight is
// needed. A small queue bounds concurrent fetches and merges repeated
// requests for one chunk. When every route fails the chunk is read from
// the offline store (offline.js), if it has one.
// Invariant: `entry.fetching` is true exactly while a fetch for it is queued
// or running, so Updates meanwhile are buffered (state.receiveUpdate).

import { receiveFetch, receiveUpdate } from "./state.js";
import { Routes, readOptions } from "./routes.js";

export const MAX_CONCURRENT = 4;
const RETRY_MS = 1_000;
/** A gateway that has not answered in this long is skipped (ms). */
const GATEWAY_TIMEOUT_MS = 5_000;

export class ChunkFetcher {
  /**
   * @param {import("./state.js").GridModel} model
   * @param {{onChange: (c: number) => void, onNetwork: (ok: boolean) => void,
   *   wanted: (c: number) => boolean, store: {load: (c: number) => Promise<any>},
   *   onRoute?: (base: string) => void}} hooks
   * @param {Routes} routes where reads go (default: the page's origin only)
   */
  constructor(model, hooks, routes = new Routes("")) {
    this.model = model;
    this.hooks = hooks;
    this.routes = routes;
    this.queue = [];
    this.queued = new Set();
    this.again = new Set();
    this.running = 0;
    this.generation = 0;
  }

  /** Forgets everything queued (the grid's dimensions changed). */
  reset(model) {
    this.model = model;
    this.queue = [];
    this.queued.clear();
    this.again.clear();
    this.generation++;
  }

  /** Asks for a (re)fetch of chunk `c`. */
  request(c) {
    if (c < 0 || c >= this.model.nChunks) return;
    const entry = this.model.chunk(c);
    if (this.queued.has(c)) {
      if (entry.fetching && !this.queue.includes(c)) this.again.add(c);
      return;
    }
    entry.fetching = true;
    this.queued.add(c);
    this.queue.push(c);
    this.pump();
  }

  pump() {
    while (this.running < MAX_CONCURRENT && this.queue.length > 0) {
      const c = this.queue.shift();
      this.running++;
      this.fetchOne(c).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  async fetchOne(c) {
    const gen = this.generation;
    const model = this.model;
    const entry = model.chunk(c);
    const headers = {};
    if (entry.etag && entry.body) headers["If-None-Match"] = entry.etag;
    const res = await this.routedFetch(`/api/chunks/${c}`, headers);
    if (gen !== this.generation) return;
    if (!res) {
      this.done(c);
      this.hooks.onNetwork(false);
      await this.fromStore(c, entry);
      return;
    }
    this.hooks.onNetwork(true);
    const seq = Number(res.headers.get("X-Checkraft-Seq") ?? "0");
    const etag = res.headers.get("ETag");
    let r = null;
    if (res.status === 200) {
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (gen !== this.generation) return;
      r = receiveFetch(entry, { status: 200, bytes, seq, etag });
    } else if (res.status === 304) {
      r = receiveFetch(entry, { status: 304, seq, etag });
      if (r.refetch) {
        entry.etag = null; // no usable body: ask for the full chunk
      }
    } else {
      this.failed(entry);
      this.done(c);
      if (res.status !== 404) setTimeout(() => { if (this.hooks.wanted(c)) this.request(c); }, RETRY_MS);
      return;
    }
    this.done(c);
    if (r.changed || r.refetch) this.hooks.onChange(c);
    if (r.refetch && this.hooks.wanted(c)) this.request(c);
  }

  /** GET `path` along the routes: the first answer that is neither a
   * network error nor (from a gateway) a 5xx; null when all fail. */
  async routedFetch(path, headers) {
    let last = null;
    for (const base of this.routes.order()) {
      const opts = readOptions(base, headers);
      if (base !== "") opts.signal = AbortSignal.timeout(GATEWAY_TIMEOUT_MS);
      try {
        const res = await fetch(`${base}${path}`, opts);
        if (res.status >= 500 && base !== "") {
          this.routes.fail(base);
          last = res;
          continue;
        }
        this.routes.ok(base);
        this.hooks.onRoute?.(base);
        return res;
      } catch {
        this.routes.fail(base);
      }
    }
    return last;
  }

  done(c) {
    this.queued.delete(c);
    if (this.again.delete(c) && this.hooks.wanted(c)) this.request(c);
  }

  /** A fetch failed: stop buffering, replay what was buffered if possible. */
  failed(entry) {
    entry.fetching = false;
    const buffered = entry.buffered;
    entry.buffered = [];
    for (const u of buffered) receiveUpdate(entry, u);
  }

  /** Every route failed: the offline record stands in for the network,
   * when the chunk has nothing newer (a page kept by the Service Worker
   * may hold an older server-rendered copy). */
  async fromStore(c, entry) {
    this.failed(entry);
    const saved = await this.hooks.store.load(c).catch(() => null);
    if (!saved || entry.fetching || (entry.loaded && saved.seq <= entry.version)) return;
    const r = receiveFetch(entry, { status: 200, bytes: saved.bytes, seq: saved.seq, etag: null });
    if (r.changed) this.hooks.onChange(c);
  }
}
