// The minimap: a canvas strip where each pixel row stands for a slice of
// chunks, shaded by checked density (grey where no chunk of the slice has
// been fetched), with the viewport drawn as a frame; a click navigates.
// `minimapBuckets` is pure and tested; `Minimap` draws.

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
   * @param {{boxes, nChunks, densities: Map<number, number>, first, last}} s
   *   `first`/`last`: the visible box range
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
    const buckets = minimapBuckets(h, s.nChunks, s.densities);
    ctx.fillStyle = "#d5d8de";
    ctx.fillRect(0, 0, w, h);
    for (let y = 0; y < h; y++) {
      const d = buckets[y];
      if (d < 0) continue;
      // sqrt so that sparse chunks still show; 0 is white.
      const t = Math.sqrt(Math.min(1, d));
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
