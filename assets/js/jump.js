// Pure jump and reveal decisions: reading the jump field, and the scroll
// position that brings a box into view.

import { rowOf } from "./viewplan.js";

/**
 * The box a jump field's text names: `{index}`, or `{error}` to show.
 * Spaces, commas, underscores and `#` are ignored ("1,000,000", "#42").
 * @param {string} text
 * @param {number|null} boxes the grid's size, when known
 */
export function parseJump(text, boxes) {
  const raw = String(text).replace(/[\s,_#]/g, "");
  if (!/^\d+$/.test(raw)) return { error: "Enter a box number" };
  const index = Number(raw);
  if (boxes !== null && index >= boxes) {
    return { error: `Boxes go from 0 to ${(boxes - 1).toLocaleString("en-US")}` };
  }
  return { index };
}

/**
 * The content position that shows box `index` with the least scrolling
 * from `pos`, or null when it is already in view.
 * @param {object} L a layout (viewplan.computeLayout)
 */
export function revealPos(L, pos, index) {
  const top = rowOf(L, index) * L.rowHeight;
  if (top < pos) return top;
  if (top + L.rowHeight > pos + L.height) return top + L.rowHeight - L.height;
  return null;
}
