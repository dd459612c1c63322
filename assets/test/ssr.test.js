// Unit tests of the server-rendered page's data block parsing (ssr.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSsr } from "../js/ssr.js";

test("the gateway's block parses into chunks with their bitsets", () => {
  const text = '{"boxes":16,"chunk_size":16,"chunks":[{"chunk":0,"seq":7,"etag":"W/\\"ab\\"","bits":"AYA="}]}';
  const d = parseSsr(text);
  assert.equal(d.boxes, 16);
  assert.equal(d.chunkSize, 16);
  assert.equal(d.chunks.length, 1);
  assert.deepEqual([...d.chunks[0].bytes], [0x01, 0x80]);
  assert.equal(d.chunks[0].seq, 7);
  assert.equal(d.chunks[0].etag, 'W/"ab"');
});

test("broken blocks and entries are refused", () => {
  assert.equal(parseSsr(null), null);
  assert.equal(parseSsr("{"), null);
  assert.equal(parseSsr('{"boxes":16,"chunk_size":0,"chunks":[]}'), null);
  const d = parseSsr('{"boxes":16,"chunk_size":16,"chunks":[{"chunk":0,"seq":1,"bits":"!!"},{"chunk":-1,"seq":1,"bits":""}]}');
  assert.deepEqual(d.chunks, []);
});
