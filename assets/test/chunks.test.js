// Unit tests of chunk fetching (chunks.js) against a fake fetch: ETag/304, buffering, the offline store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChunkFetcher } from "../js/chunks.js";
import { GridModel, receiveUpdate } from "../js/state.js";
import { bitsetGet } from "../js/protocol.js";

/** Installs a fake global fetch serving chunk bodies with ETags; returns the request log. */
function fakeServer(chunks) {
  const log = [];
  globalThis.fetch = async (url, init = {}) => {
    const c = Number(String(url).split("/").pop());
    const inm = init.headers?.["If-None-Match"] ?? null;
    log.push({ url, inm });
    const ch = chunks.get(c);
    if (!ch) return new Response("", { status: 404 });
    const etag = `"1-1-${ch.seq}"`;
    const headers = { ETag: etag, "X-Checkraft-Seq": String(ch.seq) };
    if (inm === etag) return new Response(null, { status: 304, headers });
    return new Response(ch.bytes.slice(), { status: 200, headers });
  };
  return log;
}

const settle = () => new Promise((r) => setTimeout(r, 10));

test("fetch, then If-None-Match: an unchanged chunk is a 304 that keeps the body", async () => {
  const server = new Map([[0, { seq: 4, bytes: new Uint8Array([0b101]) }]]);
  const log = fakeServer(server);
  const model = new GridModel(8, 8);
  const changed = [];
  const f = new ChunkFetcher(model, {
    onChange: (c) => changed.push(c), onNetwork: () => {}, wanted: () => true, store: { load: async () => null },
  });
  f.request(0);
  await settle();
  const e = model.chunk(0);
  assert.equal(e.loaded, true);
  assert.equal(e.version, 4);
  assert.ok(bitsetGet(e.bits, 2));
  assert.deepEqual(log.map((r) => r.inm), [null]);
  f.request(0);
  await settle();
  assert.deepEqual(log.map((r) => r.inm), [null, '"1-1-4"']);
  assert.equal(e.version, 4);
  assert.ok(bitsetGet(e.bits, 0));
  assert.deepEqual(changed, [0], "a 304 changes nothing");
});

test("an update during the fetch is buffered and applied after it", async () => {
  const server = new Map([[0, { seq: 4, bytes: new Uint8Array([0]) }]]);
  fakeServer(server);
  const model = new GridModel(8, 8);
  const f = new ChunkFetcher(model, {
    onChange: () => {}, onNetwork: () => {}, wanted: () => true, store: { load: async () => null },
  });
  f.request(0);
  const e = model.chunk(0);
  assert.equal(receiveUpdate(e, { chunk: 0, prev_version: 4, version: 5, entries: [{ offset: 7, checked: true }] }), "buffered");
  await settle();
  assert.equal(e.version, 5);
  assert.ok(bitsetGet(e.bits, 7));
});

test("network failure reads the offline store", async () => {
  globalThis.fetch = async () => { throw new TypeError("offline"); };
  const model = new GridModel(8, 8);
  const net = [];
  const f = new ChunkFetcher(model, {
    onChange: () => {}, onNetwork: (ok) => net.push(ok), wanted: () => true,
    store: { load: async () => ({ bytes: new Uint8Array([0x80]), seq: 9 }) },
  });
  f.request(0);
  await settle();
  const e = model.chunk(0);
  assert.deepEqual(net, [false]);
  assert.equal(e.loaded, true);
  assert.equal(e.version, 9);
  assert.ok(bitsetGet(e.bits, 7));
  assert.equal(e.etag, null, "a stored copy is never used for If-None-Match");
});
