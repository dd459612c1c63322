// Unit tests of the minimap's pure bucketing and click mapping (minimap.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { boxAtMinimapY, minimapBuckets } from "../js/minimap.js";

test("few chunks: each spans several pixel rows; unknown is -1", () => {
  const b = minimapBuckets(10, 5, new Map([[0, 0.5], [3, 1]]));
  assert.deepEqual([...b], [0.5, 0.5, -1, -1, -1, -1, 1, 1, -1, -1]);
});

test("many chunks: a pixel row averages its known chunks", () => {
  const d = new Map([[0, 0.2], [1, 0.4], [999_999, 1]]);
  const b = minimapBuckets(100, 1_000_000, d);
  assert.ok(Math.abs(b[0] - 0.3) < 1e-6);
  assert.equal(b[50], -1);
  assert.equal(b[99], 1);
});

test("clicks map to boxes", () => {
  assert.equal(boxAtMinimapY(0, 100, 1000), 0);
  assert.equal(boxAtMinimapY(50, 100, 1000), 500);
  assert.equal(boxAtMinimapY(100, 100, 1000), 999);
});
