// Pure subscription and eviction decisions of the page: which chunks to
// subscribe to for a visible box range, which of them to fetch, which
// copies go stale, and which chunks to forget. main.js applies them
// (socket link, fetcher, model).

import { wantedChunks } from "./state.js";

/**
 * The next subscription set for the visible boxes `range` ({first, last}).
 * @param {{range: {first: number, last: number}, chunkSize: number, nChunks: number,
 *   margin: number, max: number, wanted: number[],
 *   chunks: Map<number, {loaded: boolean, stale: boolean}>}} s
 *   `wanted`: the current set; `chunks`: the model's entries
 * @returns {{visible: number[], wanted: number[], changed: boolean, fetch: number[], stale: number[]}}
 *   `fetch`: chunks to (re)fetch, visible ones first; `stale`: chunks no
 *   longer subscribed (their copy gets no more updates)
 */
export function planSubscriptions({ range, chunkSize, nChunks, margin, max, wanted, chunks }) {
  const visible = wantedChunks(range.first, range.last, chunkSize, nChunks, 0, max);
  const next = wantedChunks(range.first, range.last, chunkSize, nChunks, margin, max);
  const changed = next.length !== wanted.length || next.some((c, i) => c !== wanted[i]);
  if (!changed) return { visible, wanted, changed, fetch: [], stale: [] };
  const before = new Set(wanted);
  const nextSet = new Set(next);
  const stale = wanted.filter((c) => !nextSet.has(c) && chunks.has(c));
  const order = [...visible, ...next.filter((c) => !visible.includes(c))];
  const fetch = order.filter((c) => {
    const e = chunks.get(c);
    return !before.has(c) || !e || !e.loaded || e.stale;
  });
  return { visible, wanted: next, changed, fetch, stale };
}

/**
 * Chunks to drop so that at most `maxKept` remain, oldest first (the
 * Map's order), never a wanted or fetching one.
 * @param {Map<number, {fetching: boolean}>} chunks
 * @param {number[]} wanted
 * @param {number} maxKept
 * @returns {number[]}
 */
export function evictable(chunks, wanted, maxKept) {
  let excess = chunks.size - maxKept;
  if (excess <= 0) return [];
  const keep = new Set(wanted);
  const out = [];
  for (const [c, e] of chunks) {
    if (excess <= 0) break;
    if (keep.has(c) || e.fetching) continue;
    out.push(c);
    excess--;
  }
  return out;
}

/**
 * The page's connection state, as `<html data-connection>` shows it.
 * @param {{online: boolean, networkDown: boolean, hubState: string, visibleLoaded: boolean}} s
 * @returns {"offline"|"live"|"connecting"|"reconnecting"}
 */
export function connectionState({ online, networkDown, hubState, visibleLoaded }) {
  if (!online || (networkDown && hubState !== "live")) return "offline";
  if (hubState === "live") return visibleLoaded ? "live" : "connecting";
  return hubState === "reconnecting" ? "reconnecting" : "connecting";
}
