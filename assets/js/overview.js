// The whole-grid overview (`GET /api/overview`, checked boxes per region)
// for the minimap: parsing, density per pixel row, merging with the
// densities of chunks this tab holds (fresher), and when to refetch.
// Pure; the page fetches (main.js) and the minimap draws (minimap.js).

/** Refetch at most this often when the checked total moves (ms). */
export const OVERVIEW_MIN_MS = 2_000;
/** ... and at least this often anyway (ms). */
export const OVERVIEW_MAX_MS = 60_000;

/**
 * A validated overview body, or null.
 * @returns {{boxes: number, start: number, end: number, region: number, counts: number[]}|null}
 */
export function parseOverview(json) {
  if (!json || typeof json !== "object") return null;
  const { boxes, start, end, region, counts } = json;
  const nums = [boxes, start, end, region].every((n) => Number.isSafeInteger(n) && n >= 0);
  if (!nums || region <= 0 || end <= start || !Array.isArray(counts)) return null;
  if (counts.length !== Math.ceil((end - start) / region)) return null;
  if (!counts.every((n) => Number.isSafeInteger(n) && n >= 0)) return null;
  return { boxes, start, end, region, counts };
}

/**
 * Density (checked / boxes) per pixel row of a `height`-row strip standing
 * for the grid's `boxes`; -1 where the overview says nothing.
 * @returns {Float32Array}
 */
export function overviewBuckets(height, boxes, ov) {
  const out = new Float32Array(Math.max(0, height)).fill(-1);
  if (!ov || height <= 0 || boxes <= 0) return out;
  const checked = new Float64Array(height);
  const total = new Float64Array(height);
  ov.counts.forEach((count, i) => {
    const s = ov.start + i * ov.region;
    const e = Math.min(s + ov.region, ov.end);
    if (e <= s) return;
    const y0 = Math.min(height - 1, Math.floor((s * height) / boxes));
    const y1 = Math.min(height, Math.max(y0 + 1, Math.floor((e * height) / boxes)));
    const share = 1 / (y1 - y0);
    for (let y = y0; y < y1; y++) {
      checked[y] += count * share;
      total[y] += (e - s) * share;
    }
  });
  for (let y = 0; y < height; y++) if (total[y] > 0) out[y] = Math.min(1, checked[y] / total[y]);
  return out;
}

/** Rows the tab knows itself (>= 0 in `local`) win; else the overview's. */
export function mergeBuckets(local, overview) {
  const out = new Float32Array(local.length);
  for (let y = 0; y < local.length; y++) out[y] = local[y] >= 0 ? local[y] : (overview[y] ?? -1);
  return out;
}

/**
 * Whether to fetch the overview now.
 * @param {{fetchedAt: number|null, checkedAtFetch: number|null, checked: number|null,
 *   now: number, inFlight: boolean}} s
 */
export function overviewDue({ fetchedAt, checkedAtFetch, checked, now, inFlight }) {
  if (inFlight) return false;
  if (fetchedAt === null) return true;
  const age = now - fetchedAt;
  if (age >= OVERVIEW_MAX_MS) return true;
  return age >= OVERVIEW_MIN_MS && checked !== null && checked !== checkedAtFetch;
}
