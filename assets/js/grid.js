// The grid's DOM: a recycled pool of rows (role=row) of cells
// (role=gridcell, each holding one <input type=checkbox data-index>),
// absolutely placed inside #grid, whose height (the layout's spacer height)
// gives the scroll container its scroll range.
// It only applies patches from viewplan.diffPlans; it never decides what to
// show. Invariant: after `apply`, the DOM equals the last plan diffed.

import { CHECKED, DISABLED, HIGHLIGHT, PENDING, UNKNOWN } from "./viewplan.js";

export class GridView {
  /**
   * @param {HTMLElement} viewport the scroll container
   * @param {HTMLElement} grid the role=grid element, the scrolled content
   */
  constructor(viewport, grid) {
    this.viewport = viewport;
    this.grid = grid;
    this.rows = [];
    this.inputs = [];
    this.cells = [];
    this.cols = 0;
    this.tabStop = null;
  }

  /** Sizes the scroll area and the aria counts for a layout (and ends the
   * server-rendered flow layout, if any). */
  applyLayout(L) {
    this.grid.classList.remove("ssr");
    this.grid.style.height = `${L.spacer}px`;
    this.grid.setAttribute("aria-rowcount", String(L.rows));
    this.grid.setAttribute("aria-colcount", String(L.cols));
    this.grid.style.setProperty("--cols", String(L.cols));
    this.grid.style.setProperty("--row-height", `${L.rowHeight}px`);
  }

  /** Applies patches from diffPlans. */
  apply(patches) {
    for (const p of patches) {
      if (p.op === "cell") this.cell(p);
      else if (p.op === "row") this.row(p);
      else if (p.op === "reset") this.reset(p);
    }
  }

  /** A new pool of `poolRows` rows of `cols` cells. Rows already in the
   * grid with `cols` cells (the server-rendered ones, or the last pool's)
   * are adopted as they are; only missing rows are built, and rows of
   * another width dropped. */
  reset({ poolRows, cols }) {
    this.cols = cols;
    this.tabStop = null;
    this.rows = [];
    this.inputs = [];
    this.cells = [];
    const existing = [...this.grid.children].filter((el) => el.classList.contains("row"));
    const adoptable = existing.filter((row) => row.children.length === cols
      && [...row.children].every((cell) => cell.firstElementChild?.type === "checkbox"));
    for (const row of existing) if (!adoptable.includes(row) || adoptable.indexOf(row) >= poolRows) row.remove();
    const frag = document.createDocumentFragment();
    for (let slot = 0; slot < poolRows; slot++) {
      const kept = adoptable[slot];
      if (kept) {
        kept.setAttribute("role", "row");
        for (const cell of kept.children) {
          this.cells.push(cell);
          this.inputs.push(cell.firstElementChild);
        }
        this.rows.push(kept);
        continue;
      }
      const row = document.createElement("div");
      row.className = "row";
      row.setAttribute("role", "row");
      row.hidden = true;
      for (let col = 0; col < cols; col++) {
        const cell = document.createElement("span");
        cell.className = "cell";
        cell.setAttribute("role", "gridcell");
        const input = document.createElement("input");
        input.type = "checkbox";
        input.tabIndex = -1;
        cell.append(input);
        row.append(cell);
        this.cells.push(cell);
        this.inputs.push(input);
      }
      this.rows.push(row);
      frag.append(row);
    }
    for (const el of [...this.grid.children]) if (!this.rows.includes(el)) el.remove();
    this.grid.append(frag);
  }

  row({ slot, row, y }) {
    const el = this.rows[slot];
    if (row < 0) {
      el.hidden = true;
      return;
    }
    if (el.hidden) el.hidden = false;
    el.setAttribute("aria-rowindex", String(row + 1));
    el.style.transform = `translateY(${y}px)`;
  }

  cell({ slot, col, index, flags }) {
    const i = slot * this.cols + col;
    const input = this.inputs[i];
    const cell = this.cells[i];
    if (index < 0) {
      cell.hidden = true;
      input.removeAttribute("data-index");
      return;
    }
    if (cell.hidden) cell.hidden = false;
    const s = String(index);
    if (input.dataset.index !== s) {
      input.dataset.index = s;
      input.setAttribute("aria-label", `box ${s}`);
    }
    // Write only what changed: a fast scroll re-targets every cell per frame.
    const checked = (flags & CHECKED) !== 0;
    if (input.checked !== checked) input.checked = checked;
    const pending = (flags & PENDING) !== 0;
    if (pending !== (input.dataset.pending === "true")) {
      if (pending) input.dataset.pending = "true";
      else input.removeAttribute("data-pending");
    }
    const disabled = (flags & DISABLED) !== 0;
    if (input.disabled !== disabled) input.disabled = disabled;
    const highlight = (flags & HIGHLIGHT) !== 0;
    if (highlight !== input.classList.contains("highlight")) input.classList.toggle("highlight", highlight);
    const unknown = (flags & UNKNOWN) !== 0;
    if (unknown !== (input.dataset.unknown === "true")) {
      if (unknown) input.dataset.unknown = "true";
      else input.removeAttribute("data-unknown");
    }
  }

  /**
   * Roving tab stop: exactly one pooled input is reachable with Tab, the
   * one showing box `index` (if pooled), unless focus is already in the grid.
   */
  setTabStop(index, slot, col) {
    if (this.grid.contains(document.activeElement)) return;
    const el = this.inputs[slot * this.cols + col];
    if (!el || el.dataset.index !== String(index) || el === this.tabStop) return;
    if (this.tabStop) this.tabStop.tabIndex = -1;
    el.tabIndex = 0;
    this.tabStop = el;
  }

  /** The input showing box `index`, if it is in the pool. */
  inputFor(index) {
    const s = String(index);
    return this.inputs.find((el) => el.dataset.index === s) ?? null;
  }

  /** Re-syncs one input from the plan flags (after the browser toggled it itself). */
  forceChecked(index, checked) {
    const el = this.inputFor(index);
    if (el) el.checked = checked;
  }
}
