// Unit tests of gateway choice (endpoints.js): config parsing, URL resolution, scoring, backoff.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  backoffDelay, bestCandidate, closeMeansAvoid, endpointsFromConfig, pickTwo, resolveEndpoint, scoreCandidate,
} from "../js/endpoints.js";

test("config parsing falls back to /ws", () => {
  assert.deepEqual(endpointsFromConfig({ endpoints: ["ws://a/ws", "ws://b/ws"] }), ["ws://a/ws", "ws://b/ws"]);
  assert.deepEqual(endpointsFromConfig(null), ["/ws"]);
  assert.deepEqual(endpointsFromConfig({ endpoints: [] }), ["/ws"]);
  assert.deepEqual(endpointsFromConfig({ endpoints: "nope" }), ["/ws"]);
  assert.deepEqual(endpointsFromConfig({ endpoints: [3, "", "/ws2"] }), ["/ws2"]);
});

test("a registry-built config.json (source, per-gateway load) gives its endpoints", () => {
  // The gateways' /config.json from the live registry (gateway/src/registry.rs):
  // the page uses `endpoints` and takes each gateway's load from its Hello.
  const config = {
    endpoints: ["ws://g1:8081/ws", "ws://g2:8082/ws"],
    source: "registry",
    gateways: [
      { endpoint: "ws://g1:8081/ws", connections: 12, load: 1 },
      { endpoint: "ws://g2:8082/ws", connections: 0, load: 0 },
    ],
  };
  assert.deepEqual(endpointsFromConfig(config), ["ws://g1:8081/ws", "ws://g2:8082/ws"]);
  assert.deepEqual(endpointsFromConfig({ endpoints: ["/ws"], source: "default", gateways: [] }), ["/ws"]);
});

test("relative endpoints use the page's origin and scheme", () => {
  assert.equal(resolveEndpoint("/ws", "http://127.0.0.1:18090/#5"), "ws://127.0.0.1:18090/ws");
  assert.equal(resolveEndpoint("/ws", "https://example.org/x"), "wss://example.org/ws");
  assert.equal(resolveEndpoint("ws://127.0.0.1:8081/ws", "https://example.org/"), "ws://127.0.0.1:8081/ws");
});

test("scores: lower rtt and lower load win", () => {
  assert.ok(scoreCandidate({ rtt: 10, load: 0 }) < scoreCandidate({ rtt: 20, load: 0 }));
  assert.ok(scoreCandidate({ rtt: 10, load: 0 }) < scoreCandidate({ rtt: 10, load: 900 }));
  assert.ok(scoreCandidate({ rtt: 30, load: 0 }) < scoreCandidate({ rtt: 20, load: 1000 }));
  assert.ok(scoreCandidate({ rtt: null, load: 0 }) > scoreCandidate({ rtt: 200, load: 500 }));
  const a = { url: "a", hello: {}, rtt: 5, load: 800 };
  const b = { url: "b", hello: {}, rtt: 6, load: 10 };
  const c = { url: "c", hello: null, rtt: 1, load: 0 };
  assert.equal(bestCandidate([a, b, c]), b);
  assert.equal(bestCandidate([c]), null);
});

test("two random choices avoid failed endpoints when possible", () => {
  const seq = [0.9, 0.0];
  let i = 0;
  const rnd = () => seq[i++ % seq.length];
  assert.deepEqual(pickTwo(["a", "b", "c"], new Set(), rnd), ["c", "a"]);
  assert.deepEqual(pickTwo(["a", "b", "c"], new Set(["a", "c"]), () => 0), ["b"]);
  assert.deepEqual(pickTwo(["a"], new Set(["a"]), () => 0.5), ["a"]);
});

test("backoff doubles from 250 ms to 10 s with ±50% jitter", () => {
  assert.equal(backoffDelay(0, () => 0.5), 250);
  assert.equal(backoffDelay(1, () => 0.5), 500);
  assert.equal(backoffDelay(10, () => 0.5), 10_000);
  assert.equal(backoffDelay(0, () => 0), 125);
  assert.ok(backoffDelay(50, () => 0.999) < 15_000);
});

test("close codes that mean go elsewhere", () => {
  assert.equal(closeMeansAvoid(1001), true);
  assert.equal(closeMeansAvoid(1013), true);
  assert.equal(closeMeansAvoid(1000), false);
});
