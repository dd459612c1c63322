// Unit tests of the page's subscription, eviction and connection-state decisions (subscriptions.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connectionState, evictable, planSubscriptions } from "../js/subscriptions.js";

const base = { chunkSize: 100, nChunks: 50, margin: 1, max: 32 };

test("the visible chunks and a margin are wanted; new ones are fetched, visible first", () => {
  const p = planSubscriptions({ ...base, range: { first: 250, last: 420 }, wanted: [], chunks: new Map() });
  assert.deepEqual(p.visible, [2, 3, 4]);
  assert.deepEqual(p.wanted, [1, 2, 3, 4, 5]);
  assert.equal(p.changed, true);
  assert.deepEqual(p.fetch, [2, 3, 4, 1, 5]);
  assert.deepEqual(p.stale, []);
});

test("an unchanged set does nothing; a moved one fetches only what it lacks and stales what it left", () => {
  const chunks = new Map([1, 2, 3, 4, 5].map((c) => [c, { loaded: true, stale: false }]));
  const same = planSubscriptions({ ...base, range: { first: 250, last: 420 }, wanted: [1, 2, 3, 4, 5], chunks });
  assert.equal(same.changed, false);
  assert.deepEqual(same.fetch, []);
  chunks.get(4).stale = true;
  const moved = planSubscriptions({ ...base, range: { first: 350, last: 520 }, wanted: [1, 2, 3, 4, 5], chunks });
  assert.deepEqual(moved.wanted, [2, 3, 4, 5, 6]);
  assert.deepEqual(moved.fetch, [4, 6], "4 is stale, 6 is new; 2, 3, 5 are current");
  assert.deepEqual(moved.stale, [1]);
});

test("the set is capped around the middle of the view", () => {
  const p = planSubscriptions({ ...base, max: 4, range: { first: 0, last: 4999 }, wanted: [], chunks: new Map() });
  assert.equal(p.wanted.length, 4);
});

test("eviction drops the oldest chunks beyond the cap, never wanted or fetching ones", () => {
  const chunks = new Map([[7, { fetching: false }], [8, { fetching: true }], [9, { fetching: false }], [10, { fetching: false }]]);
  assert.deepEqual(evictable(chunks, [9], 2), [7, 10]);
  assert.deepEqual(evictable(chunks, [], 4), []);
  assert.deepEqual(evictable(chunks, [7, 9, 10], 1), [], "nothing may go");
});

test("connection state", () => {
  const s = { online: true, networkDown: false, hubState: "live", visibleLoaded: true };
  assert.equal(connectionState(s), "live");
  assert.equal(connectionState({ ...s, visibleLoaded: false }), "connecting");
  assert.equal(connectionState({ ...s, online: false }), "offline");
  assert.equal(connectionState({ ...s, networkDown: true }), "live", "a live socket outranks a failed fetch");
  assert.equal(connectionState({ ...s, networkDown: true, hubState: "reconnecting" }), "offline");
  assert.equal(connectionState({ ...s, hubState: "reconnecting" }), "reconnecting");
  assert.equal(connectionState({ ...s, hubState: "connecting" }), "connecting");
});
