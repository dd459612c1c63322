// Unit tests of the pure grid model (state.js): the version rule, buffering, 304s, click overlays, subscriptions.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  GridModel, chunkCount, chunkLength, diffSets, newChunk, popcount, receiveFetch, receiveUpdate,
  toRuns, versionShowsGap, wantedChunks, MAX_BUFFERED_UPDATES,
} from "../js/state.js";
import { bitsetEncode, bitsetGet } from "../js/protocol.js";

const upd = (prev_version, version, entries, chunk = 0) => ({ type: "update", chunk, prev_version, version, entries });

test("chunk arithmetic", () => {
  assert.equal(chunkCount(1_000_000, 4096), 245);
  assert.equal(chunkLength(244, 1_000_000, 4096), 1_000_000 - 244 * 4096);
  assert.equal(chunkLength(0, 10, 4096), 10);
  assert.equal(chunkCount(4_294_967_295, 32768), 131072);
});

test("popcount", () => {
  assert.equal(popcount(new Uint8Array([0xff, 0x01, 0x80, 0])), 10);
});

test("fetch 200 then updates by the version rule", () => {
  const e = newChunk(16);
  assert.deepEqual(receiveFetch(e, { status: 200, bytes: bitsetEncode(0, 16, [1]), seq: 5, etag: '"a"' }),
    { changed: true, refetch: false });
  assert.equal(e.version, 5);
  assert.equal(receiveUpdate(e, upd(3, 5, [{ offset: 2, checked: true }])), "ignored");
  assert.equal(receiveUpdate(e, upd(4, 7, [{ offset: 2, checked: true }])), "applied");
  assert.ok(bitsetGet(e.bits, 2));
  assert.equal(e.version, 7);
  assert.equal(receiveUpdate(e, upd(9, 10, [{ offset: 3, checked: true }])), "refetch");
  assert.ok(e.stale);
  assert.equal(e.density, 2 / 16);
});

test("updates during a fetch are buffered and replayed", () => {
  const e = newChunk(16);
  e.fetching = true;
  assert.equal(receiveUpdate(e, upd(5, 6, [{ offset: 0, checked: true }])), "buffered");
  assert.equal(receiveUpdate(e, upd(2, 4, [{ offset: 9, checked: true }])), "buffered");
  const r = receiveFetch(e, { status: 200, bytes: new Uint8Array(2), seq: 5, etag: '"x"' });
  assert.deepEqual(r, { changed: true, refetch: false });
  assert.ok(bitsetGet(e.bits, 0));
  assert.ok(!bitsetGet(e.bits, 9), "the update older than the fetch is ignored");
  assert.equal(e.version, 6);
});

test("a gap in buffered updates asks for a refetch", () => {
  const e = newChunk(8);
  e.fetching = true;
  receiveUpdate(e, upd(8, 9, [{ offset: 0, checked: true }]));
  const r = receiveFetch(e, { status: 200, bytes: new Uint8Array(1), seq: 5, etag: null });
  assert.equal(r.refetch, true);
  assert.equal(e.stale, true);
});

test("too many buffered updates: drop them and refetch", () => {
  const e = newChunk(8);
  e.fetching = true;
  for (let i = 0; i < MAX_BUFFERED_UPDATES; i++) receiveUpdate(e, upd(i, i + 1, []));
  assert.equal(receiveUpdate(e, upd(999, 1000, [])), "refetch");
  assert.equal(e.buffered.length, 0);
});

test("304 restores the kept body, even after local updates", () => {
  const e = newChunk(8);
  receiveFetch(e, { status: 200, bytes: new Uint8Array([0b1]), seq: 3, etag: '"e3"' });
  receiveUpdate(e, upd(3, 4, [{ offset: 1, checked: true }]));
  e.stale = true; // say a gap was seen
  const r = receiveFetch(e, { status: 304, seq: 3, etag: '"e3"' });
  assert.equal(r.refetch, false);
  assert.deepEqual([...e.bits], [0b1]);
  assert.equal(e.version, 3);
  assert.deepEqual([...e.body], [0b1], "the kept body is not mutated");
});

test("a newer live copy survives an older fetch", () => {
  const e = newChunk(8);
  receiveFetch(e, { status: 200, bytes: new Uint8Array([0]), seq: 3, etag: '"e3"' });
  receiveUpdate(e, upd(3, 8, [{ offset: 4, checked: true }]));
  receiveFetch(e, { status: 200, bytes: new Uint8Array([0]), seq: 5, etag: '"e5"' });
  assert.equal(e.version, 8);
  assert.ok(bitsetGet(e.bits, 4));
  assert.equal(e.etag, '"e5"');
});

test("304 without a body is unusable", () => {
  const e = newChunk(8);
  assert.equal(receiveFetch(e, { status: 304, seq: 1, etag: '"x"' }).refetch, true);
});

test("versions gap", () => {
  const e = newChunk(8);
  assert.equal(versionShowsGap(e, 5), false, "unloaded chunks are fetched anyway");
  receiveFetch(e, { status: 200, bytes: new Uint8Array(1), seq: 5, etag: null });
  assert.equal(versionShowsGap(e, 5), false);
  assert.equal(versionShowsGap(e, 6), true);
});

test("wanted chunks: visible plus margin, clamped and capped", () => {
  assert.deepEqual(wantedChunks(0, 1000, 4096, 245, 1), [0, 1]);
  assert.deepEqual(wantedChunks(5000, 9000, 4096, 245, 1), [0, 1, 2, 3]);
  assert.deepEqual(wantedChunks(999_000, 999_999, 4096, 245, 1), [242, 243, 244]);
  const capped = wantedChunks(0, 100_000, 64, 2000, 1, 32);
  assert.equal(capped.length, 32);
  assert.deepEqual(wantedChunks(10, 5, 4096, 245, 1), []);
});

test("runs and set diffs", () => {
  assert.deepEqual(toRuns([1, 2, 3, 7, 9, 10]), [[1, 3], [7, 1], [9, 2]]);
  assert.deepEqual(toRuns([]), []);
  assert.deepEqual(diffSets([1, 2, 3], [2, 3, 4, 5]), { add: [4, 5], remove: [1] });
});

test("grid model: optimistic click, ack applied, overlay until the chunk catches up", () => {
  const m = new GridModel(20, 8);
  const e = m.chunk(0);
  receiveFetch(e, { status: 200, bytes: new Uint8Array(1), seq: 10, etag: null });
  assert.equal(m.isChecked(3), false);
  m.beginSet(3, true, 1, 0);
  assert.equal(m.isChecked(3), true);
  assert.equal(m.isPending(3), true);
  assert.deepEqual(m.resolveSet(1, "applied", 12), { index: 3, checked: true, status: "applied", reverted: false });
  assert.equal(m.isPending(3), false);
  assert.equal(m.isChecked(3), true, "acked value shows before the update arrives");
  assert.deepEqual([...m.persistedBits(0)], [0b1000]);
  receiveUpdate(e, upd(10, 12, [{ offset: 3, checked: true }]));
  assert.equal(m.isChecked(3), true);
  assert.equal(m.acked.size, 0, "overlay dropped once the chunk reached the ack's seq");
});

test("grid model: failures revert, superseded clicks and unknown ids are ignored", () => {
  const m = new GridModel(20, 8);
  receiveFetch(m.chunk(1), { status: 200, bytes: new Uint8Array([0xff]), seq: 1, etag: null });
  m.beginSet(9, false, 1, 0);
  m.beginSet(9, true, 2, 5);
  assert.equal(m.resolveSet(1, "applied", 3), null);
  assert.deepEqual(m.resolveSet(2, "rate_limited"), { index: 9, checked: true, status: "rate_limited", reverted: true });
  assert.equal(m.isChecked(9), true, "back to the server's bit");
  m.beginSet(10, false, 3, 100);
  assert.deepEqual(m.expiredRequests(50), []);
  assert.deepEqual(m.expiredRequests(150), [3]);
  assert.deepEqual(m.pendingRequests(), [3]);
  assert.equal(m.resolveSet(99, "applied", 1), null);
});

test("grid model: unknown boxes read unchecked and not loaded", () => {
  const m = new GridModel(4_294_967_295, 32768);
  assert.equal(m.nChunks, 131072);
  assert.equal(m.isLoaded(4_294_967_294), false);
  assert.equal(m.isChecked(4_294_967_294), false);
  assert.equal(m.chunk(131071).len, 4_294_967_295 - 131071 * 32768);
});
