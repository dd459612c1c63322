// Unit tests of the overview's parsing, bucketing and refetch rule (overview.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  OVERVIEW_MAX_MS, OVERVIEW_MIN_MS, mergeBuckets, overviewBuckets, overviewDue, parseOverview,
} from "../js/overview.js";

const OV = { boxes: 1000, start: 0, end: 1000, region: 250, level: 0, counts: [0, 25, 0, 250] };

test("parse accepts the gateway's body and refuses broken ones", () => {
  assert.deepEqual(parseOverview(OV), { boxes: 1000, start: 0, end: 1000, region: 250, counts: [0, 25, 0, 250] });
  assert.equal(parseOverview(null), null);
  assert.equal(parseOverview({ ...OV, counts: [1, 2] }), null, "wrong length");
  assert.equal(parseOverview({ ...OV, region: 0 }), null);
  assert.equal(parseOverview({ ...OV, counts: [0, -1, 0, 0] }), null);
});

test("regions spread over the rows they cover; a row averages what it holds", () => {
  const ov = parseOverview(OV);
  assert.deepEqual([...overviewBuckets(4, 1000, ov)].map((d) => Math.round(d * 100) / 100), [0, 0.1, 0, 1]);
  const eight = overviewBuckets(8, 1000, ov);
  assert.deepEqual([...eight].map((d) => Math.round(d * 100) / 100), [0, 0, 0.1, 0.1, 0, 0, 1, 1]);
  // More regions than rows: two regions share a row.
  assert.deepEqual([...overviewBuckets(2, 1000, ov)].map((d) => Math.round(d * 1000) / 1000), [0.05, 0.5]);
  assert.deepEqual([...overviewBuckets(3, 1000, null)], [-1, -1, -1]);
});

test("a zoomed overview leaves the rest unknown", () => {
  const ov = parseOverview({ boxes: 1000, start: 500, end: 1000, region: 500, counts: [50] });
  assert.deepEqual([...overviewBuckets(4, 1000, ov)].map((d) => Math.round(d * 10) / 10), [-1, -1, 0.1, 0.1]);
});

test("the tab's own densities win over the overview's", () => {
  const merged = mergeBuckets(Float32Array.from([-1, 0.5, -1]), Float32Array.from([0.1, 0.2, -1]));
  assert.deepEqual([...merged].map((d) => Math.round(d * 10) / 10), [0.1, 0.5, -1]);
});

test("refetch: at once, then when the checked total moves (not too often), and every minute", () => {
  const s = { fetchedAt: null, checkedAtFetch: null, checked: 5, now: 0, inFlight: false };
  assert.equal(overviewDue(s), true);
  assert.equal(overviewDue({ ...s, inFlight: true }), false);
  const after = { ...s, fetchedAt: 1000, checkedAtFetch: 5 };
  assert.equal(overviewDue({ ...after, now: 1000 + OVERVIEW_MIN_MS }), false, "nothing moved");
  assert.equal(overviewDue({ ...after, checked: 6, now: 1000 + OVERVIEW_MIN_MS - 1 }), false, "too soon");
  assert.equal(overviewDue({ ...after, checked: 6, now: 1000 + OVERVIEW_MIN_MS }), true);
  assert.equal(overviewDue({ ...after, now: 1000 + OVERVIEW_MAX_MS }), true);
});
