// Unit tests of the jump field and reveal decisions (jump.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseJump, revealPos } from "../js/jump.js";
import { computeLayout } from "../js/viewplan.js";

test("the jump field reads numbers written for people", () => {
  assert.deepEqual(parseJump("1,000", 1_000_000), { index: 1000 });
  assert.deepEqual(parseJump(" #42 ", 1_000_000), { index: 42 });
  assert.deepEqual(parseJump("999_999", 1_000_000), { index: 999_999 });
  assert.deepEqual(parseJump("12", null), { index: 12 }, "dimensions not known yet");
  assert.equal(parseJump("abc", 10).error, "Enter a box number");
  assert.equal(parseJump("", 10).error, "Enter a box number");
  assert.equal(parseJump("10", 10).error, "Boxes go from 0 to 9");
});

test("reveal scrolls the least, or not at all", () => {
  const L = computeLayout({ width: 360, height: 100, boxes: 1000, cell: 36, rowHeight: 36 });
  assert.equal(L.cols, 10);
  assert.equal(revealPos(L, 0, 5), null, "row 0 is in view");
  assert.equal(revealPos(L, 0, 35), 3 * 36 + 36 - 100, "row 3 comes in at the bottom");
  assert.equal(revealPos(L, 500, 5), 0, "row 0 comes in at the top");
});
