// Pure grid state: chunk contents and versions, the optimistic-click
// overlays, and subscription arithmetic. No DOM, no I/O, no timers; every
// function here is unit-tested in test/state.test.js.
//
// Invariants:
// - A chunk entry's `bits`/`version` only move forward by the protocol's
//   rule (docs/protocol.md): an Update applies iff prev_version <= v < version,
//   a fetch result replaces the content unless the live copy is newer.
// - `body`/`etag` are the last HTTP body and its ETag, kept verbatim, so an
//   `If-None-Match` refetch that answers 304 can restore the exact content.
// - Updates arriving while a chunk is unloaded or being fetched are buffered
//   (bounded) and replayed after the fetch, so none is lost in the race.
// - What a box shows = its pending click, else its acked click (until the
//   chunk's version reaches the ack's seq), else the chunk's bit.

import { applyUpdate, bitsetGet } from "./protocol.js";

/** Updates buffered per chunk while it is being fetched; beyond this, refetch. */
export const MAX_BUFFERED_UPDATES = 256;

/** Number of chunks of a grid. */
export function chunkCount(boxes, chunkSize) {
  return chunkSize > 0 ? Math.ceil(boxes / chunkSize) : 0;
}

/** Number of boxes in chunk `c` (the last one may be short). */
export function chunkLength(c, boxes, chunkSize) {
  return Math.max(0, Math.min(chunkSize, boxes - c * chunkSize));
}

/** A fresh, unloaded chunk entry. */
export function newChunk(len) {
  return {
    len,
    bits: new Uint8Array(Math.ceil(len / 8)),
    version: -1,
    loaded: false,
    stale: false,
    fetching: false,
    etag: null,
    body: null,
    buffered: [],
    density: null,
  };
}

const POP = new Uint8Array(256);
for (let i = 1; i < 256; i++) POP[i] = (i & 1) + POP[i >> 1];

/** Number of set bits in a bitset. */
export function popcount(bytes) {
  let n = 0;
  for (let i = 0; i < bytes.length; i++) n += POP[bytes[i]];
  return n;
}

function refreshDensity(entry) {
  entry.density = entry.len > 0 ? popcount(entry.bits) / entry.len : 0;
}

/**
 * Applies an HTTP fetch result to a chunk entry.
 * @param {object} entry from `newChunk`
 * @param {{status: 200|304, bytes?: Uint8Array, seq: number, etag: string|null}} res
 * @returns {{changed: boolean, refetch: boolean}} `refetch` when the result
 *   cannot be used (a 304 without a kept body) or a replayed update found a gap.
 */
export function receiveFetch(entry, res) {
  entry.fetching = false;
  let content;
  if (res.status === 200) {
    entry.body = res.bytes;
    entry.etag = res.etag;
    content = res.bytes;
  } else if (res.status === 304 && entry.body) {
    content = entry.body;
    if (res.etag) entry.etag = res.etag;
  } else {
    return { changed: false, refetch: true };
  }
  let changed = false;
  if (!entry.loaded || entry.stale || res.seq >= entry.version) {
    if (content.length !== entry.bits.length) return { changed: false, refetch: true };
    changed = !entry.loaded || !sameBytes(entry.bits, content);
    entry.bits = content.slice();
    entry.version = res.seq;
  }
  entry.loaded = true;
  entry.stale = false;
  let refetch = false;
  const buffered = entry.buffered;
  entry.buffered = [];
  for (const u of buffered) {
    const r = applyUpdate(entry, u);
    if (r === "applied") changed = true;
    else if (r === "refetch") refetch = true;
  }
  if (refetch) entry.stale = true;
  refreshDensity(entry);
  return { changed, refetch };
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Applies (or buffers) a decoded Update.
 * @returns {"applied"|"ignored"|"refetch"|"buffered"}
 */
export function receiveUpdate(entry, msg) {
  if (!entry.loaded || entry.fetching) {
    if (entry.buffered.length >= MAX_BUFFERED_UPDATES) {
      entry.buffered = [];
      entry.stale = true;
      return "refetch";
    }
    entry.buffered.push(msg);
    return "buffered";
  }
  let r;
  try {
    r = applyUpdate(entry, msg);
  } catch {
    r = "refetch";
  }
  if (r === "refetch") entry.stale = true;
  if (r === "applied") refreshDensity(entry);
  return r;
}

/** Whether a Versions entry shows a missed change. */
export function versionShowsGap(entry, version) {
  return entry.loaded && entry.version < version;
}

// ---------------------------------------------------------------- subscriptions

/**
 * Chunks covering boxes `first .. last` plus `margin` chunks each side,
 * clamped to the grid and to `cap` chunks (centred on the visible ones).
 * @returns {number[]} ascending chunk ids
 */
export function wantedChunks(first, last, chunkSize, nChunks, margin, cap = 64) {
  if (nChunks <= 0 || last < first) return [];
  let a = Math.floor(first / chunkSize) - margin;
  let b = Math.floor(last / chunkSize) + margin;
  a = Math.max(0, a);
  b = Math.min(nChunks - 1, b);
  if (b - a + 1 > cap) {
    const mid = Math.floor((Math.floor(first / chunkSize) + Math.floor(last / chunkSize)) / 2);
    a = Math.max(0, mid - Math.floor(cap / 2));
    b = Math.min(nChunks - 1, a + cap - 1);
  }
  const out = [];
  for (let c = a; c <= b; c++) out.push(c);
  return out;
}

/** Compresses ascending chunk ids into `[first, count]` runs. */
export function toRuns(sorted) {
  const runs = [];
  for (const c of sorted) {
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === c) last[1]++;
    else runs.push([c, 1]);
  }
  return runs;
}

/** What to add and remove to go from one chunk set to another (ascending arrays). */
export function diffSets(oldSet, newSet) {
  const o = new Set(oldSet);
  const n = new Set(newSet);
  return {
    add: [...n].filter((c) => !o.has(c)).sort((x, y) => x - y),
    remove: [...o].filter((c) => !n.has(c)).sort((x, y) => x - y),
  };
}

// ---------------------------------------------------------------- the grid model

/**
 * The client's model of the grid: chunks plus the click overlays. Time is
 * passed in (`now`), never read, so tests drive it.
 */
export class GridModel {
  constructor(boxes = 0, chunkSize = 1) {
    this.setDimensions(boxes, chunkSize);
  }

  setDimensions(boxes, chunkSize) {
    if (boxes === this.boxes && chunkSize === this.chunkSize) return false;
    this.boxes = boxes;
    this.chunkSize = chunkSize;
    this.nChunks = chunkCount(boxes, chunkSize);
    /** @type {Map<number, ReturnType<typeof newChunk>>} */
    this.chunks = new Map();
    /** index -> {checked, reqId, at} */
    this.pending = new Map();
    /** reqId -> index */
    this.byReq = new Map();
    /** index -> {checked, seq} */
    this.acked = new Map();
    return true;
  }

  chunkOf(index) {
    return Math.floor(index / this.chunkSize);
  }

  /** The entry of chunk `c`, created unloaded on first use. */
  chunk(c) {
    let e = this.chunks.get(c);
    if (!e) {
      e = newChunk(chunkLength(c, this.boxes, this.chunkSize));
      this.chunks.set(c, e);
    }
    return e;
  }

  /** The server's value of a box as far as known (no overlays); null if unknown. */
  serverValue(index) {
    const e = this.chunks.get(this.chunkOf(index));
    if (!e || !e.loaded) return null;
    return bitsetGet(e.bits, index - this.chunkOf(index) * this.chunkSize);
  }

  /** What the box shows: pending, then acked, then the chunk's bit. */
  isChecked(index) {
    const p = this.pending.get(index);
    if (p) return p.checked;
    const a = this.acked.get(index);
    if (a) {
      const e = this.chunks.get(this.chunkOf(index));
      if (!e || !e.loaded || e.version < a.seq) return a.checked;
      this.acked.delete(index);
    }
    return this.serverValue(index) === true;
  }

  isPending(index) {
    return this.pending.has(index);
  }

  isLoaded(index) {
    const e = this.chunks.get(this.chunkOf(index));
    return !!e && e.loaded;
  }

  /** Records an optimistic click. A newer click on the same box supersedes the older. */
  beginSet(index, checked, reqId, now) {
    const old = this.pending.get(index);
    if (old) this.byReq.delete(old.reqId);
    this.pending.set(index, { checked, reqId, at: now });
    this.byReq.set(reqId, index);
  }

  /**
   * Resolves a click by its Ack (or by a local failure status).
   * @returns {{index, checked, status, reverted}|null} null for an unknown
   *   or superseded request id
   */
  resolveSet(reqId, status, seq = 0) {
    const index = this.byReq.get(reqId);
    if (index === undefined) return null;
    this.byReq.delete(reqId);
    const p = this.pending.get(index);
    this.pending.delete(index);
    if (status === "applied") {
      const e = this.chunks.get(this.chunkOf(index));
      if (!e || !e.loaded || e.version < seq) this.acked.set(index, { checked: p.checked, seq });
      else this.acked.delete(index);
      return { index, checked: p.checked, status, reverted: false };
    }
    return { index, checked: p.checked, status, reverted: true };
  }

  /** Request ids of clicks pending since before `cutoff`. */
  expiredRequests(cutoff) {
    const out = [];
    for (const p of this.pending.values()) if (p.at < cutoff) out.push(p.reqId);
    return out;
  }

  /** Request ids of every pending click. */
  pendingRequests() {
    return [...this.byReq.keys()];
  }

  /**
   * The bits to persist for chunk `c`: the server bits plus acked clicks
   * not yet reflected (pending clicks are not "known state").
   */
  persistedBits(c) {
    const e = this.chunks.get(c);
    if (!e || !e.loaded) return null;
    const bits = e.bits.slice();
    const start = c * this.chunkSize;
    for (const [index, a] of this.acked) {
      if (this.chunkOf(index) !== c || e.version >= a.seq) continue;
      const off = index - start;
      const mask = 1 << (off & 7);
      bits[off >> 3] = a.checked ? bits[off >> 3] | mask : bits[off >> 3] & ~mask;
    }
    return bits;
  }

  /** Checked density of every loaded chunk: Map chunk -> 0..1. */
  densities() {
    const out = new Map();
    for (const [c, e] of this.chunks) if (e.loaded && e.density !== null) out.set(c, e.density);
    return out;
  }
}
