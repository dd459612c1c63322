// Chunk fetching over HTTP from the page's own origin (`/api/chunks/{c}`,
// never the WebSocket's host), with `If-None-Match` from the kept ETag and
// body so an unchanged chunk costs a 304. A small queue bounds concurrent
// fetches and merges repeated requests for one chunk. On a network error
// the chunk is read from the offline store (offline.js), if it has one.
// Invariant: `entry.fetching` is true exactly while a fetch for it is queued
// or running, so Updates meanwhile are buffered (state.receiveUpdate).

import { receiveFetch, receiveUpdate } from "./state.js";

export const MAX_CONCURRENT = 4;
const RETRY_MS = 1_000;

export class ChunkFetcher {
  /**
   * @param {import("./state.js").GridModel} model
   * @param {{onChange: (c: number) => void, onNetwork: (ok: boolean) => void,
   *   wanted: (c: number) => boolean, store: {load: (c: number) => Promise<any>}}} hooks
   */
  constructor(model, hooks) {
    this.model = model;
    this.hooks = hooks;
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
    let res;
    try {
      res = await fetch(`/api/chunks/${c}`, { headers, cache: "no-store" });
    } catch {
      if (gen !== this.generation) return;
      this.done(c);
      this.hooks.onNetwork(false);
      await this.fromStore(c, entry);
      return;
    }
    if (gen !== this.generation) return;
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

  async fromStore(c, entry) {
    this.failed(entry);
    if (entry.loaded) return;
    const saved = await this.hooks.store.load(c).catch(() => null);
    if (!saved || entry.loaded) return;
    const r = receiveFetch(entry, { status: 200, bytes: saved.bytes, seq: saved.seq, etag: null });
    if (r.changed) this.hooks.onChange(c);
  }
}
