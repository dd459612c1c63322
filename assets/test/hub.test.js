// Unit tests of the socket hub (hub.js) against fake WebSockets and timers: sharing, routing, acks, failover.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Hub, TAB_TIMEOUT_MS } from "../js/hub.js";
import { decodeClient, encodeServer } from "../js/protocol.js";

/** A fake WebSocket the test drives: `sent` holds decoded client messages. */
class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
  }
  send(bytes) { this.sent.push(decodeClient(bytes)); }
  close(code) {
    this.closedWith = code;
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  recv(msg) { this.onmessage?.({ data: encodeServer(msg) }); }
  drop(code) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
  /** Open, Hello and Pong to the last Ping. */
  greet(load = 0) {
    this.open();
    this.recv({ type: "hello", protocol_version: 2, boxes: 1000, chunk_size: 100, gateway_id: 1, load });
    const ping = this.sent.find((m) => m.type === "ping");
    this.recv({ type: "pong", nonce: ping.nonce });
  }
}

function harness({ endpoints = ["/ws"], random = () => 0.5 } = {}) {
  const sockets = [];
  const timers = [];
  let now = 0;
  const hub = new Hub({
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    fetchConfig: async () => ({ endpoints }),
    base: "http://page.test/",
    random,
    now: () => now,
    setTimeout: (f, ms) => {
      const t = { f, at: now + ms, done: false };
      timers.push(t);
      return t;
    },
    clearTimeout: (t) => { if (t) t.done = true; },
    setInterval: () => 0,
    clearInterval: () => {},
  });
  const tab = (id) => {
    const got = [];
    const send = (m) => got.push(m);
    hub.tabMessage(id, { t: "hello" }, send);
    return { got, send, msg: (m) => hub.tabMessage(id, m, send) };
  };
  const advance = (ms) => {
    now += ms;
    for (const t of timers) if (!t.done && t.at <= now) { t.done = true; t.f(); }
  };
  return { hub, sockets, tab, advance, tick: () => new Promise((r) => setTimeout(r, 0)) };
}

test("one socket for many tabs; subscriptions are unioned with refcounts", async () => {
  const h = harness();
  const a = h.tab("a");
  const b = h.tab("b");
  await h.tick();
  assert.equal(h.sockets.length, 1, "one socket (a single endpoint)");
  const ws = h.sockets[0];
  assert.equal(ws.url, "ws://page.test/ws");
  a.msg({ t: "sub", chunks: [1, 2, 3] });
  ws.greet();
  await h.tick();
  assert.equal(h.hub.state, "live");
  assert.deepEqual(ws.sent.filter((m) => m.type === "subscribe"), [{ type: "subscribe", first_chunk: 1, count: 3 }]);
  assert.ok(a.got.some((m) => m.t === "status" && m.state === "live" && m.endpoint === "ws://page.test/ws"));
  ws.sent = [];
  b.msg({ t: "sub", chunks: [3, 4] });
  assert.deepEqual(ws.sent, [{ type: "subscribe", first_chunk: 4, count: 1 }]);
  ws.sent = [];
  a.msg({ t: "sub", chunks: [] });
  assert.deepEqual(ws.sent, [{ type: "unsubscribe", first_chunk: 1, count: 2 }], "chunk 3 is still wanted by b");
  ws.sent = [];
  b.msg({ t: "bye" });
  assert.deepEqual(ws.sent, [{ type: "unsubscribe", first_chunk: 3, count: 2 }]);
});

test("updates go only to tabs that want the chunk; stats to all", async () => {
  const h = harness();
  const a = h.tab("a");
  const b = h.tab("b");
  await h.tick();
  a.msg({ t: "sub", chunks: [1] });
  b.msg({ t: "sub", chunks: [5] });
  h.sockets[0].greet();
  await h.tick();
  a.got.length = 0;
  b.got.length = 0;
  h.sockets[0].recv({ type: "update", chunk: 5, prev_version: 1, version: 2, entries: [] });
  h.sockets[0].recv({ type: "resync", first_chunk: 0, count: 3, reason: "fell_behind" });
  h.sockets[0].recv({ type: "versions", first_chunk: 4, versions: [1, 2] });
  h.sockets[0].recv({ type: "stats", checked: 7, online: 2 });
  assert.deepEqual(a.got.map((m) => m.m.type), ["resync", "stats"]);
  assert.deepEqual(b.got.map((m) => m.m.type), ["update", "versions", "stats"]);
});

test("set request ids are mapped per tab and acks routed back", async () => {
  const h = harness();
  const a = h.tab("a");
  const b = h.tab("b");
  await h.tick();
  h.sockets[0].greet();
  await h.tick();
  const ws = h.sockets[0];
  ws.sent = [];
  a.msg({ t: "set", id: 1, index: 10, checked: true });
  b.msg({ t: "set", id: 1, index: 11, checked: false });
  const [sa, sb] = ws.sent;
  assert.notEqual(sa.request_id, sb.request_id);
  ws.recv({ type: "ack", request_id: sb.request_id, status: "rate_limited", seq: 0 });
  ws.recv({ type: "ack", request_id: sa.request_id, status: "applied", seq: 9 });
  assert.deepEqual(a.got.filter((m) => m.t === "ack"), [{ t: "ack", id: 1, status: "applied", seq: 9 }]);
  assert.deepEqual(b.got.filter((m) => m.t === "ack"), [{ t: "ack", id: 1, status: "rate_limited", seq: 0 }]);
});

test("several clicks go as one SetMany and each is answered from its box's run", async () => {
  const h = harness();
  const a = h.tab("a");
  await h.tick();
  h.sockets[0].greet();
  await h.tick();
  const ws = h.sockets[0];
  ws.sent = [];
  // Box 12 twice: the last value goes out, both ids are answered.
  a.msg({ t: "sets", sets: [
    { id: 1, index: 12, checked: true }, { id: 2, index: 10, checked: true },
    { id: 3, index: 11, checked: true }, { id: 4, index: 12, checked: false },
  ] });
  assert.equal(ws.sent.length, 1);
  const m = ws.sent[0];
  assert.equal(m.type, "set_many");
  assert.deepEqual(m.sets, [
    { index: 10, checked: true }, { index: 11, checked: true }, { index: 12, checked: false },
  ]);
  // Boxes 10, 11 applied at seq 9 (one shard), box 12 rate limited.
  ws.recv({ type: "ack_many", request_id: m.request_id, runs: [
    { len: 2, status: "applied", seq: 9 }, { len: 1, status: "rate_limited", seq: 0 },
  ] });
  const acks = a.got.filter((x) => x.t === "ack").sort((x, y) => x.id - y.id);
  assert.deepEqual(acks, [
    { t: "ack", id: 1, status: "rate_limited", seq: 0 },
    { t: "ack", id: 2, status: "applied", seq: 9 },
    { t: "ack", id: 3, status: "applied", seq: 9 },
    { t: "ack", id: 4, status: "rate_limited", seq: 0 },
  ]);
  // A second AckMany for the same request is ignored.
  ws.recv({ type: "ack_many", request_id: m.request_id, runs: [{ len: 3, status: "applied", seq: 1 }] });
  assert.equal(a.got.filter((x) => x.t === "ack").length, 4);
});

test("a SetMany in flight is answered 'disconnected' per click when the socket drops", async () => {
  const h = harness();
  const a = h.tab("a");
  await h.tick();
  h.sockets[0].greet();
  await h.tick();
  const ws = h.sockets[0];
  ws.sent = [];
  const sets = [];
  for (let i = 0; i < 300; i++) sets.push({ id: i, index: i, checked: true });
  a.msg({ t: "sets", sets });
  // 300 boxes: two SetMany messages (256 + 44).
  assert.deepEqual(ws.sent.map((x) => x.sets.length), [256, 44]);
  ws.drop(1006);
  const acks = a.got.filter((x) => x.t === "ack");
  assert.equal(acks.length, 300);
  assert.ok(acks.every((x) => x.status === "disconnected"));
});

test("queued clicks are sent together; a lone click stays a Set", async () => {
  const h = harness();
  const a = h.tab("a");
  await h.tick();
  h.sockets[0].greet();
  await h.tick();
  const ws = h.sockets[0];
  ws.sent = [];
  h.hub.tabMessages("a", [
    { t: "set", id: 1, index: 5, checked: true }, { t: "set", id: 2, index: 6, checked: true },
    { t: "sub", chunks: [0] }, { t: "set", id: 3, index: 7, checked: false },
  ], a.send);
  assert.deepEqual(ws.sent.map((x) => x.type), ["set_many", "subscribe", "set"]);
});

test("a drop fails sets in flight, reconnects with backoff, resubscribes", async () => {
  const h = harness({ endpoints: ["ws://g1/ws", "ws://g2/ws"] });
  const a = h.tab("a");
  await h.tick();
  assert.equal(h.sockets.length, 2, "two candidates");
  a.msg({ t: "sub", chunks: [2] });
  const g1 = h.sockets.find((s) => s.url === "ws://g1/ws");
  const g2 = h.sockets.find((s) => s.url === "ws://g2/ws");
  g1.greet(900);
  g2.greet(10);
  await h.tick();
  assert.equal(h.hub.endpoint, "ws://g2/ws", "the less loaded gateway wins");
  assert.equal(g1.closedWith, 1000, "the other candidate is closed");
  a.msg({ t: "set", id: 7, index: 1, checked: true });
  g2.drop(1001);
  assert.deepEqual(a.got.filter((m) => m.t === "ack"), [{ t: "ack", id: 7, status: "disconnected", seq: 0 }]);
  assert.equal(h.hub.state, "reconnecting");
  a.msg({ t: "set", id: 8, index: 1, checked: true });
  assert.equal(a.got.at(-1).status, "disconnected", "no socket: answered at once");
  h.advance(500);
  await h.tick();
  const fresh = h.sockets.slice(2);
  assert.deepEqual(fresh.map((s) => s.url), ["ws://g1/ws"], "the endpoint that said 1001 is avoided");
  fresh[0].greet();
  await h.tick();
  assert.equal(h.hub.state, "live");
  assert.deepEqual(fresh[0].sent.filter((m) => m.type === "subscribe"), [{ type: "subscribe", first_chunk: 2, count: 1 }]);
  const statuses = a.got.filter((m) => m.t === "status");
  assert.equal(statuses.at(-1).gen, 2, "a new generation tells tabs to refetch");
});

test("no hello in time: retry later", async () => {
  const h = harness();
  h.tab("a");
  await h.tick();
  h.sockets[0].open();
  h.advance(1000);
  await h.tick();
  assert.equal(h.sockets[0].closedWith, 1000);
  assert.equal(h.hub.state, "connecting");
  h.advance(400);
  await h.tick();
  assert.equal(h.sockets.length, 2);
});

test("wrong protocol version is refused", async () => {
  const h = harness();
  h.tab("a");
  await h.tick();
  const ws = h.sockets[0];
  ws.open();
  // A version-1 Hello (fixed-width fields): refused by its version byte.
  ws.onmessage?.({ data: Uint8Array.from([0x81, 1, ...new Array(18).fill(0)]) });
  await h.tick();
  assert.equal(h.hub.state, "connecting");
  assert.equal(ws.closedWith, 1000);
});

test("silent tabs are dropped", async () => {
  const h = harness();
  const a = h.tab("a");
  await h.tick();
  h.sockets[0].greet();
  await h.tick();
  a.msg({ t: "sub", chunks: [4] });
  h.advance(TAB_TIMEOUT_MS + 1);
  h.hub.tick();
  assert.equal(h.hub.tabs.size, 0);
  assert.equal(h.hub.refs.size, 0);
  // A throttled tab that was only late comes back with its next beat.
  h.sockets[0].sent = [];
  a.msg({ t: "beat", chunks: [4] });
  assert.equal(h.hub.tabs.size, 1);
  assert.deepEqual(h.sockets[0].sent, [{ type: "subscribe", first_chunk: 4, count: 1 }]);
});

test("a returning browser tries its last gateway alone; without it, or when it fails, two race", async () => {
  const endpoints = ["ws://a.test/ws", "ws://b.test/ws", "ws://c.test/ws"];
  const h = harness({ endpoints });
  const got = [];
  h.hub.tabMessage("t", { t: "hello", last: "ws://c.test/ws" }, (m) => got.push(m));
  await h.tick();
  assert.deepEqual(h.sockets.map((s) => s.url), ["ws://c.test/ws"], "one handshake");
  h.sockets[0].greet();
  await h.tick();
  assert.equal(h.hub.endpoint, "ws://c.test/ws");

  const fresh = harness({ endpoints });
  fresh.tab("t");
  await fresh.tick();
  assert.equal(fresh.sockets.length, 2, "no hint: the better of two");

  const gone = harness({ endpoints });
  gone.hub.tabMessage("t", { t: "hello", last: "ws://gone.test/ws" }, () => {});
  await gone.tick();
  assert.equal(gone.sockets.length, 2, "a hint no longer configured is ignored");

  const failing = harness({ endpoints });
  failing.hub.tabMessage("t", { t: "hello", last: "ws://a.test/ws" }, () => {});
  await failing.tick();
  assert.equal(failing.sockets.length, 1);
  failing.sockets[0].drop(1006);
  failing.advance(1_000);
  await failing.tick();
  failing.advance(20_000);
  await failing.tick();
  assert.ok(failing.sockets.length >= 3, "the retry races two");
  assert.ok(failing.sockets.slice(1).every((s) => s.url !== "ws://a.test/ws"), "avoiding the failed one");
});
