// Unit tests of the pure layout, scaled scrolling, view plan and plan diff (viewplan.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CHECKED, PENDING, MAX_SPACER, computeLayout, diffPlans, nextPos, planView, posForIndex,
  proportionalPos, rowOf, scrollForPos, visibleRange,
} from "../js/viewplan.js";

const flags = (set) => (i) => (set.has(i) ? CHECKED : 0);

test("layout: columns fit the width, small grids scroll 1:1", () => {
  const L = computeLayout({ width: 390, height: 700, boxes: 1_000_000, cell: 30, rowHeight: 30 });
  assert.equal(L.cols, 13);
  assert.equal(L.rows, Math.ceil(1_000_000 / 13));
  assert.equal(L.scaled, false);
  assert.equal(L.spacer, L.rows * 30);
  assert.equal(nextPos(L, 0, 0, 12345), 12345);
  assert.equal(scrollForPos(L, 12345), 12345);
});

test("layout: huge grids are scaled under the element-height cap", () => {
  const L = computeLayout({ width: 1200, height: 800, boxes: 4_294_967_295 });
  assert.equal(L.scaled, true);
  assert.ok(L.spacer <= MAX_SPACER);
  assert.equal(proportionalPos(L, L.maxScroll), L.maxPos);
  assert.equal(proportionalPos(L, 0), 0);
  // The last box is reachable and visible.
  const pos = posForIndex(L, 4_294_967_294);
  const range = visibleRange(L, pos);
  assert.ok(range.first <= 4_294_967_294 && 4_294_967_294 <= range.last);
  // Round trip through scrollTop.
  const s = scrollForPos(L, posForIndex(L, 2_000_000_000));
  assert.ok(Math.abs(proportionalPos(L, s) - posForIndex(L, 2_000_000_000)) < 1);
});

test("scaled scrolling: small moves are 1:1, big moves proportional, ends snap", () => {
  const L = computeLayout({ width: 1200, height: 800, boxes: 4_294_967_295 });
  const p0 = proportionalPos(L, 1000);
  assert.equal(nextPos(L, p0, 1000, 1100), p0 + 100);
  assert.equal(nextPos(L, p0, 1000, 900), p0 - 100);
  assert.equal(nextPos(L, p0, 1000, 500_000), proportionalPos(L, 500_000));
  assert.equal(nextPos(L, p0, 1000, 0), 0);
  assert.equal(nextPos(L, p0, 1000, L.maxScroll), L.maxPos);
});

test("visible range and rows", () => {
  const L = computeLayout({ width: 320, height: 320, boxes: 1000, cell: 32, rowHeight: 32 });
  assert.equal(L.cols, 10);
  assert.deepEqual(visibleRange(L, 0), { first: 0, last: 99 });
  assert.deepEqual(visibleRange(L, 16), { first: 0, last: 109 });
  assert.equal(rowOf(L, 999), 99);
  assert.deepEqual(visibleRange(L, L.maxPos), { first: 900, last: 999 });
});

test("plan: slots recycle by row, the last row is partial", () => {
  const L = computeLayout({ width: 320, height: 320, boxes: 1005, cell: 32, rowHeight: 32, overscan: 2 });
  const plan = planView(L, L.maxPos, flags(new Set([1004])));
  assert.equal(plan.poolRows, L.poolRows);
  const lastRow = L.rows - 1;
  const slot = lastRow % L.poolRows;
  assert.equal(plan.slotRow[slot], lastRow);
  assert.equal(plan.cellIndex[slot * L.cols + 4], 1004);
  assert.equal(plan.cellFlags[slot * L.cols + 4], CHECKED);
  assert.equal(plan.cellIndex[slot * L.cols + 5], -1);
  for (let s = 0; s < plan.poolRows; s++) assert.equal(plan.slotRow[s] % L.poolRows, s);
});

test("diff: first plan resets, scrolling one row re-targets one slot", () => {
  const L = computeLayout({ width: 320, height: 320, boxes: 100_000, cell: 32, rowHeight: 32 });
  const a = planView(L, 3200, flags(new Set()));
  const first = diffPlans(null, a);
  assert.equal(first[0].op, "reset");
  assert.equal(first.filter((p) => p.op === "cell").length, L.poolRows * L.cols);
  const b = planView(L, 3232, flags(new Set()));
  const patches = diffPlans(a, b);
  assert.equal(patches.filter((p) => p.op === "row").length, 1, "rows stay put; one slot re-targeted");
  assert.equal(patches.filter((p) => p.op === "cell").length, L.cols, "one row of cells re-targeted");
  assert.deepEqual(diffPlans(b, b), []);
});

test("plan: rows sit at their offset unscaled, relative to scrollTop scaled", () => {
  const small = computeLayout({ width: 320, height: 320, boxes: 100_000, cell: 32, rowHeight: 32 });
  const p = planView(small, 3200, () => 0);
  assert.equal(p.slotY[100 % small.poolRows], 3200);
  const big = computeLayout({ width: 320, height: 320, boxes: 4_000_000_000, cell: 32, rowHeight: 32 });
  const pos = 1e10 + 16;
  const q = planView(big, pos, () => 0, 5000);
  const row = Math.floor(pos / 32);
  assert.equal(q.slotY[row % big.poolRows], row * 32 - pos + 5000);
});

test("diff: a state change patches exactly that cell", () => {
  const L = computeLayout({ width: 320, height: 320, boxes: 1000, cell: 32, rowHeight: 32 });
  const a = planView(L, 0, () => 0);
  const b = planView(L, 0, (i) => (i === 42 ? CHECKED | PENDING : 0));
  const patches = diffPlans(a, b);
  assert.equal(patches.length, 1);
  assert.equal(patches[0].op, "cell");
  assert.equal(patches[0].index, 42);
  assert.equal(patches[0].flags, CHECKED | PENDING);
});

test("tiny grids", () => {
  const L = computeLayout({ width: 320, height: 320, boxes: 3 });
  assert.equal(L.rows, 1);
  assert.equal(L.poolRows, 1);
  const plan = planView(L, 0, () => 0);
  assert.deepEqual([...plan.cellIndex].slice(0, 4), [0, 1, 2, -1]);
  const empty = computeLayout({ width: 320, height: 320, boxes: 0 });
  assert.equal(planView(empty, 0, () => 0).poolRows, 0);
  assert.deepEqual(visibleRange(empty, 0), { first: 0, last: -1 });
});
