// Unit tests of the HTTP routing decisions (routes.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { FAIL_MS, Routes, httpBase, orderBases, readOptions } from "../js/routes.js";

const ORIGIN = "http://127.0.0.1:8080";

test("a gateway's HTTP base comes from its websocket URL", () => {
  assert.equal(httpBase("ws://127.0.0.1:8081/ws", ORIGIN), "http://127.0.0.1:8081");
  assert.equal(httpBase("wss://gw.example/ws", ORIGIN), "https://gw.example");
  assert.equal(httpBase("wss://grid.example/eu/ws", ORIGIN), "https://grid.example/eu");
  // The page's own origin: same-origin reads.
  assert.equal(httpBase("ws://127.0.0.1:8080/ws", ORIGIN), "");
  assert.equal(httpBase("not a url", ORIGIN), "");
  assert.equal(httpBase("http://127.0.0.1:8081/ws", ORIGIN), "");
});

test("the hub's gateway first, the others next, the origin last", () => {
  const endpoints = ["ws://a:1/ws", "ws://b:2/ws", "ws://c:3/ws"];
  const order = orderBases({ preferred: "ws://b:2/ws", endpoints, origin: ORIGIN, failed: new Map(), now: 0 });
  assert.deepEqual(order, ["http://b:2", "http://a:1", "http://c:3", ""]);
  // No choice yet: config order.
  assert.deepEqual(
    orderBases({ preferred: null, endpoints, origin: ORIGIN, failed: new Map(), now: 0 }),
    ["http://a:1", "http://b:2", "http://c:3", ""],
  );
  // Only the origin configured.
  assert.deepEqual(
    orderBases({ preferred: "ws://127.0.0.1:8080/ws", endpoints: ["/ws"], origin: ORIGIN, failed: new Map(), now: 0 }),
    [""],
  );
});

test("a base that failed recently goes to the back, before the origin, until FAIL_MS passes", () => {
  const endpoints = ["ws://a:1/ws", "ws://b:2/ws"];
  const failed = new Map([["http://a:1", 1000]]);
  const at = (now) => orderBases({ preferred: "ws://a:1/ws", endpoints, origin: ORIGIN, failed, now });
  assert.deepEqual(at(1000 + FAIL_MS - 1), ["http://b:2", "http://a:1", ""]);
  assert.deepEqual(at(1000 + FAIL_MS), ["http://a:1", "http://b:2", ""]);
});

test("Routes follows the hub and remembers failures", () => {
  let now = 0;
  const r = new Routes(ORIGIN, () => now);
  assert.deepEqual(r.order(), [""], "nothing known: the origin");
  r.update("ws://a:1/ws", ["ws://a:1/ws", "ws://b:2/ws"]);
  assert.deepEqual(r.order(), ["http://a:1", "http://b:2", ""]);
  r.fail("http://a:1");
  assert.deepEqual(r.order(), ["http://b:2", "http://a:1", ""]);
  r.fail(""); // the origin is never benched
  assert.equal(r.order().at(-1), "");
  r.ok("http://a:1");
  assert.deepEqual(r.order(), ["http://a:1", "http://b:2", ""]);
  // The hub moved; an update without a list keeps the old one.
  r.update("ws://b:2/ws", null);
  assert.deepEqual(r.order(), ["http://b:2", "http://a:1", ""]);
  now += FAIL_MS;
});

test("same-origin reads keep If-None-Match; cross-origin ones send no custom header", () => {
  const inm = { "If-None-Match": 'W/"ab"' };
  assert.deepEqual(readOptions("", inm), { headers: inm, cache: "no-store" });
  const cors = readOptions("http://a:1", inm);
  assert.equal(cors.headers, undefined);
  assert.equal(cors.cache, "no-cache");
  assert.equal(cors.mode, "cors");
});

test("a base the page's CSP forbids is never tried again", () => {
  const r = new Routes(ORIGIN, () => 0);
  r.update("ws://a:1/ws", ["ws://a:1/ws", "ws://b:2/ws"]);
  r.block("http://a:1");
  r.block("");
  assert.deepEqual(r.order(), ["http://b:2", ""]);
  r.ok("http://a:1");
  assert.deepEqual(r.order(), ["http://b:2", ""], "blocked for good");
});
