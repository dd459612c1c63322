// The minimap: a canvas strip where each pixel row stands for a slice of
// the grid, shaded by checked density: from the chunks this tab holds
// where it has them, else from the whole-grid overview (overview.js,
// `GET /api/overview`), grey where neither says anything; the viewport is
// drawn as a frame, and a click navigates. `minimapBuckets` is pure and
// tested; `Minimap` draws.

import { mergeBuckets, overviewBuckets } from "./overview.js";

/**
 * Density per pixel row: the mean density of the known chunks mapped to
 * that row, or -1 when none is known.
 * @param {number} height pixel rows
 * @param {number} nChunks chunks in the grid
 * @param {Map<number, number>} densities chunk -> 0..1, known chunks only
 * @returns {Float32Array}
 */
export function minimapBuckets(height, nChunks, densities) {
  const out = new Float32Array(height).fill(-1);
  if (height <= 0 || nChunks <= 0) return out;
  const sum = new Float64Array(height);
  const cnt = new Uint32Array(height);
  for (const [c, d] of densities) {
    if (c < 0 || c >= nChunks) continue;
    const y0 = Math.floor((c * height) / nChunks);
    const y1 = Math.max(y0 + 1, Math.floor(((c + 1) * height) / nChunks));
    for (let y = y0; y < y1 && y < height; y++) {
      sum[y] += d;
      cnt[y]++;
    }
  }
  for (let y = 0; y < height; y++) if (cnt[y] > 0) out[y] = sum[y] / cnt[y];
  return out;
}

/** The box a click at `y` of `height` points at. */
export function boxAtMinimapY(y, height, boxes) {
  if (height <= 0 || boxes <= 0) return 0;
  return Math.min(boxes - 1, Math.max(0, Math.floor((y / height) * boxes)));
}

export class Minimap {
  /** The density drawn for box `index` at the last draw (-1: unknown). */
  densityAt(index) {
    if (!this.buckets || this.boxes <= 0) return -1;
    const y = Math.min(this.buckets.length - 1, Math.floor((index / this.boxes) * this.buckets.length));
    return this.buckets[y];
  }

  /**
   * @param {HTMLCanvasElement} canvas
   * @param {(index: number) => void} onNavigate
   */
  constructor(canvas, onNavigate) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.boxes = 0;
    const go = (ev) => {
      const rect = canvas.getBoundingClientRect();
      onNavigate(boxAtMinimapY(ev.clientY - rect.top, rect.height, this.boxes));
    };
    canvas.addEventListener("click", go);
    canvas.addEventListener("pointermove", (ev) => { if (ev.buttons === 1) go(ev); });
  }

  /**
   * Draws.
   * @param {{boxes, nChunks, densities: Map<number, number>, first, last, overview?}} s
   *   `first`/`last`: the visible box range; `overview`: a parsed overview
   */
  draw(s) {
    this.boxes = s.boxes;
    const dpr = globalThis.devicePixelRatio || 1;
    const cssW = this.canvas.clientWidth || 40;
    const cssH = this.canvas.clientHeight || 300;
    const w = Math.max(1, Math.round(cssW * dpr));
    const h = Math.max(1, Math.round(cssH * dpr));
    if (this.canvas.width !== w) this.canvas.width = w;
    if (this.canvas.height !== h) this.canvas.height = h;
    const ctx = this.ctx;
    if (!ctx) return;
    const buckets = mergeBuckets(
      minimapBuckets(h, s.nChunks, s.densities),
      overviewBuckets(h, s.boxes, s.overview ?? null),
    );
    this.buckets = buckets;
    ctx.fillStyle = "#d5d8de";
    ctx.fillRect(0, 0, w, h);
    for (let y = 0; y < h; y++) {
      const d = buckets[y];
      if (d < 0) continue;
      // 0 is white; any checked box shows at least a clear tint, and sqrt
      // spreads the sparse end.
      const t = d > 0 ? 0.3 + 0.7 * Math.sqrt(Math.min(1, d)) : 0;
      const r = Math.round(255 - t * (255 - 31));
      const g = Math.round(255 - t * (255 - 111));
      const b = Math.round(255 - t * (255 - 235));
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(0, y, w, 1);
    }
    if (s.boxes > 0 && s.last >= s.first) {
      const y0 = Math.floor((s.first / s.boxes) * h);
      const y1 = Math.max(y0 + 3 * dpr, Math.ceil(((s.last + 1) / s.boxes) * h));
      ctx.strokeStyle = "#c2410c";
      ctx.lineWidth = 2 * dpr;
      ctx.strokeRect(dpr, y0, w - 2 * dpr, y1 - y0);
    }
  }
}
