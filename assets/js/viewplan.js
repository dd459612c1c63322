// Pure view logic: layout (columns, rows, scaled scrolling), the view plan
// (which box each pooled cell shows) and the diff of two plans into DOM
// patches. No DOM here; grid.js applies the patches, test/viewplan.test.js
// tests the rest.
//
// Scrolling model: the page scrolls a spacer of height `spacer` px. While
// the content (`rows * rowHeight`) fits under `maxSpacer`, scrollTop is the
// content position. Beyond that (big grids: browsers cap element height at
// ~16.7M px) the scroll is scaled: a large move (scrollbar drag, jump)
// maps scrollTop to the content position proportionally, while small moves
// (wheel, keys, touch) move the content 1:1 so every row stays reachable.
// At either end of the scrollbar the content snaps to its own end.
//
// Placement: rows sit in the scrolled content at `y = row * rowHeight - pos
// + scrollTop`. Unscaled, pos == scrollTop, so y is simply the row's own
// offset and rows never move while scrolling (the compositor scrolls them);
// scaled, y only changes on a proportional (big) move.
//
// Pool invariant: row `r` always lives in pool slot `r % poolRows`, so a
// scroll by k rows re-targets only k slots.

/** Largest spacer height we create (well under Chrome's ~16.7M px cap). */
export const MAX_SPACER = 8_000_000;

/** Cell flag bits in a plan. */
export const CHECKED = 1;
export const PENDING = 2;
export const DISABLED = 4;
export const HIGHLIGHT = 8;
export const UNKNOWN = 16;

/**
 * Computes the layout.
 * @param {{width: number, height: number, boxes: number, cell?: number,
 *   rowHeight?: number, overscan?: number, maxSpacer?: number}} p
 */
export function computeLayout(p) {
  const cell = p.cell ?? 32;
  const rowHeight = p.rowHeight ?? 32;
  const overscan = p.overscan ?? 2;
  const maxSpacer = p.maxSpacer ?? MAX_SPACER;
  const width = Math.max(1, p.width);
  const height = Math.max(1, p.height);
  const boxes = Math.max(0, p.boxes);
  const cols = Math.max(1, Math.floor(width / cell));
  const rows = Math.ceil(boxes / cols);
  const content = rows * rowHeight;
  const scaled = content > maxSpacer;
  const spacer = scaled ? maxSpacer : content;
  const visibleRows = Math.ceil(height / rowHeight) + 1;
  const poolRows = Math.min(rows, visibleRows + 2 * overscan);
  return {
    cell, rowHeight, overscan, width, height, boxes, cols, rows, content, scaled, spacer,
    poolRows,
    maxPos: Math.max(0, content - height),
    maxScroll: Math.max(0, spacer - height),
  };
}

/** Whether two layouts need a different DOM pool. */
export function samePool(a, b) {
  return !!a && !!b && a.cols === b.cols && a.poolRows === b.poolRows;
}

function clamp(x, lo, hi) {
  return Math.min(hi, Math.max(lo, x));
}

/** Content position (px from the grid's top) for a scrollTop, proportionally. */
export function proportionalPos(L, scrollTop) {
  if (!L.scaled) return clamp(scrollTop, 0, L.maxPos);
  if (L.maxScroll <= 0) return 0;
  return clamp((scrollTop / L.maxScroll) * L.maxPos, 0, L.maxPos);
}

/**
 * The next content position after the page's scrollTop moved from
 * `prevScroll` to `scrollTop`, given the previous position.
 */
export function nextPos(L, prevPos, prevScroll, scrollTop) {
  if (!L.scaled) return clamp(scrollTop, 0, L.maxPos);
  if (scrollTop <= 0) return 0;
  if (scrollTop >= L.maxScroll - 0.5) return L.maxPos;
  const delta = scrollTop - prevScroll;
  if (Math.abs(delta) <= 2 * L.height) return clamp(prevPos + delta, 0, L.maxPos);
  return proportionalPos(L, scrollTop);
}

/** The scrollTop matching a content position (inverse of proportionalPos). */
export function scrollForPos(L, pos) {
  if (!L.scaled) return clamp(pos, 0, L.maxScroll);
  if (L.maxPos <= 0) return 0;
  return clamp((pos / L.maxPos) * L.maxScroll, 0, L.maxScroll);
}

/** Row of a box. */
export function rowOf(L, index) {
  return Math.floor(index / L.cols);
}

/** Content position that puts box `index`'s row in the middle of the viewport. */
export function posForIndex(L, index) {
  const row = rowOf(L, index);
  return clamp(row * L.rowHeight - (L.height - L.rowHeight) / 2, 0, L.maxPos);
}

/** First and last box (inclusive) whose row is at least partly visible. */
export function visibleRange(L, pos) {
  if (L.rows === 0) return { first: 0, last: -1 };
  const r0 = clamp(Math.floor(pos / L.rowHeight), 0, L.rows - 1);
  const r1 = clamp(Math.floor((pos + L.height - 1) / L.rowHeight), 0, L.rows - 1);
  return { first: r0 * L.cols, last: Math.min(L.boxes - 1, (r1 + 1) * L.cols - 1) };
}

/**
 * The view plan: for each pool slot its row and y (px from the top of the
 * scrolled content), and for each cell its box index (-1: none) and flags.
 * @param {object} L layout
 * @param {number} pos content position
 * @param {(index: number) => number} flagsOf cell flags (CHECKED | PENDING | ...)
 * @param {number} scrollTop the scroll container's scrollTop (default: pos, unscaled)
 */
export function planView(L, pos, flagsOf, scrollTop = pos) {
  const n = L.poolRows;
  const plan = {
    cols: L.cols,
    poolRows: n,
    slotRow: new Float64Array(n).fill(-1),
    slotY: new Float64Array(n),
    cellIndex: new Float64Array(n * L.cols).fill(-1),
    cellFlags: new Uint8Array(n * L.cols),
  };
  if (n === 0) return plan;
  const first = clamp(Math.floor(pos / L.rowHeight) - L.overscan, 0, Math.max(0, L.rows - n));
  for (let row = first; row < first + n && row < L.rows; row++) {
    const slot = row % n;
    plan.slotRow[slot] = row;
    plan.slotY[slot] = row * L.rowHeight - pos + scrollTop;
    const base = slot * L.cols;
    for (let col = 0; col < L.cols; col++) {
      const index = row * L.cols + col;
      if (index >= L.boxes) break;
      plan.cellIndex[base + col] = index;
      plan.cellFlags[base + col] = flagsOf(index);
    }
  }
  return plan;
}

/**
 * DOM patches turning plan `prev` (what is on screen; null: nothing) into
 * `next`. A changed pool shape starts with a `reset` patch.
 * @returns {Array<{op: "reset", poolRows, cols}
 *   | {op: "row", slot, row, y}
 *   | {op: "cell", slot, col, index, flags}>}
 */
export function diffPlans(prev, next) {
  const patches = [];
  const fresh = !prev || prev.cols !== next.cols || prev.poolRows !== next.poolRows;
  if (fresh) patches.push({ op: "reset", poolRows: next.poolRows, cols: next.cols });
  for (let slot = 0; slot < next.poolRows; slot++) {
    const row = next.slotRow[slot];
    const y = next.slotY[slot];
    if (fresh || prev.slotRow[slot] !== row || prev.slotY[slot] !== y) {
      patches.push({ op: "row", slot, row, y });
    }
    const base = slot * next.cols;
    for (let col = 0; col < next.cols; col++) {
      const i = base + col;
      const index = next.cellIndex[i];
      const flags = next.cellFlags[i];
      if (fresh || prev.cellIndex[i] !== index || prev.cellFlags[i] !== flags) {
        patches.push({ op: "cell", slot, col, index, flags });
      }
    }
  }
  return patches;
}
