// The socket hub: owns the one WebSocket of a browser and shares it among
// tabs. The same class runs inside the SharedWorker (socket-worker.js), in
// the Web Locks leader tab, and in a lone tab (per-tab mode); only the
// transport to tabs differs (see connection.js).
//
// Tab -> hub messages (plain objects):
//   {t: "hello", last?}               register (idempotent); `last`: the gateway URL this
//                                     browser used last time, tried alone first
//   {t: "sub", chunks: number[]}      the tab's whole wanted set (replaces)
//   {t: "set", id, index, checked}    a click; `id` is the tab's request id
//   {t: "sets", sets: [{id, index, checked}]}  several clicks at once (a drag, a run, a
//                                     queue flushed): one SetMany per 256 boxes (a box
//                                     given twice: the last value wins, every id answered)
//   {t: "beat", chunks}               heartbeat, repeating the wanted set (tabs silent for
//                                     TAB_TIMEOUT_MS are dropped; a dropped tab's next beat
//                                     restores it, since background tabs' timers are throttled)
//   {t: "bye"}                        the tab is going away
//   {t: "kick"}                       the browser is back online: reconnect now
// Hub -> tab:
//   {t: "status", state, endpoint, endpoints, hello, gen}  state: connecting|live|reconnecting;
//                                     `gen` grows per adopted socket (tabs refetch on change);
//                                     `endpoints`: every gateway's resolved URL (null until
//                                     /config.json is read), for routing HTTP reads (routes.js)
//   {t: "server", m}                  a decoded Update/Versions/Resync (only to tabs
//                                     subscribed to one of its chunks) or Stats (to all)
//   {t: "ack", id, status, seq}       the tab's Set outcome; status "disconnected"
//                                     when the socket dropped before the Ack. A "sets"
//                                     click gets one too, its box's part of the AckMany
//
// Invariants: the gateway's subscription set is the union of the tabs'
// sets (refcount per chunk); a chunk is subscribed on the socket iff its
// refcount > 0; every Set in flight maps to exactly one (tab, tab id), every
// SetMany to one tab and its boxes' ids, and each id is answered exactly once
// (Ack or AckMany, or "disconnected").

import {
  MAX_SETS_PER_MESSAGE, PROTOCOL_VERSION, ackManyOutcomes, decodeServer, encodeClient, helloVersion, setMany,
} from "./protocol.js";
import { toRuns } from "./state.js";
import {
  backoffDelay, bestCandidate, closeMeansAvoid, endpointsFromConfig, pickTwo, resolveEndpoint,
} from "./endpoints.js";

export const TAB_TIMEOUT_MS = 180_000;
export const CHOOSE_TIMEOUT_MS = 1_000;
export const PING_INTERVAL_MS = 20_000;
export const AVOID_MS = 30_000;

export class Hub {
  /**
   * @param {{createSocket: (url: string) => WebSocket, fetchConfig: (fresh: boolean) => Promise<any>,
   *   base: string, random?: () => number, now?: () => number,
   *   setTimeout?: Function, clearTimeout?: Function, setInterval?: Function}} deps
   */
  constructor(deps) {
    this.d = {
      random: Math.random,
      now: () => Date.now(),
      setTimeout: (f, ms) => setTimeout(f, ms),
      clearTimeout: (t) => clearTimeout(t),
      setInterval: (f, ms) => setInterval(f, ms),
      clearInterval: (t) => clearInterval(t),
      ...deps,
    };
    /** tabId -> {send, chunks: Set<number>, seen} */
    this.tabs = new Map();
    /** chunk -> number of tabs wanting it */
    this.refs = new Map();
    /** hub request id -> {tab, id} */
    this.inflight = new Map();
    this.nextReq = 1;
    this.ws = null;
    this.state = "connecting";
    this.endpoint = null;
    this.hello = null;
    this.gen = 0;
    this.everLive = false;
    this.attempt = 0;
    this.avoid = new Map(); // url -> until
    this.endpoints = null;
    this.hint = null;
    this.lastStats = null;
    this.connecting = false;
    this.retryTimer = null;
    this.closed = false;
    this.pingTimer = this.d.setInterval(() => this.tick(), 5_000);
  }

  // ------------------------------------------------------------ tabs

  addTab(id, send) {
    const known = this.tabs.get(id);
    if (known) {
      known.send = send;
      known.seen = this.d.now();
    } else {
      this.tabs.set(id, { send, chunks: new Set(), seen: this.d.now() });
    }
    this.sendStatusTo(id);
    if (this.lastStats) send({ t: "server", m: this.lastStats });
    if (!this.ws && !this.connecting && !this.retryTimer) this.connect();
  }

  removeTab(id) {
    const tab = this.tabs.get(id);
    if (!tab) return;
    this.setTabChunks(id, []);
    this.tabs.delete(id);
    for (const [req, v] of this.inflight) if (v.tab === id) this.inflight.delete(req);
  }

  /** Messages from tab `id` queued together: runs of clicks go as one "sets". */
  tabMessages(id, msgs, send) {
    for (let i = 0; i < msgs.length;) {
      let j = i;
      while (j < msgs.length && msgs[j]?.t === "set") j++;
      if (j - i > 1) this.tabMessage(id, { t: "sets", sets: msgs.slice(i, j) }, send);
      else this.tabMessage(id, msgs[i], send);
      i = Math.max(j, i + 1);
    }
  }

  /** A message from tab `id`; unknown tabs are registered with `send`. */
  tabMessage(id, msg, send) {
    if (!msg || typeof msg !== "object") return;
    if (msg.t === "bye") return this.removeTab(id);
    if (!this.tabs.has(id)) {
      if (!send) return;
      this.addTab(id, send);
    }
    const tab = this.tabs.get(id);
    tab.seen = this.d.now();
    switch (msg.t) {
      case "hello":
        if (typeof msg.last === "string" && !this.everLive) this.hint = msg.last;
        this.sendStatusTo(id);
        break;
      case "sub":
        this.setTabChunks(id, Array.isArray(msg.chunks) ? msg.chunks : []);
        break;
      case "beat":
        if (Array.isArray(msg.chunks)) this.setTabChunks(id, msg.chunks);
        break;
      case "set":
        this.set(id, msg);
        break;
      case "sets":
        this.sets(id, Array.isArray(msg.sets) ? msg.sets : []);
        break;
      case "kick":
        this.kick();
        break;
      default:
        break;
    }
  }

  setTabChunks(id, chunks) {
    const tab = this.tabs.get(id);
    if (!tab) return;
    const next = new Set(chunks.filter((c) => Number.isInteger(c) && c >= 0));
    const add = [];
    const remove = [];
    for (const c of next) {
      if (tab.chunks.has(c)) continue;
      const n = (this.refs.get(c) ?? 0) + 1;
      this.refs.set(c, n);
      if (n === 1) add.push(c);
    }
    for (const c of tab.chunks) {
      if (next.has(c)) continue;
      const n = (this.refs.get(c) ?? 1) - 1;
      if (n <= 0) {
        this.refs.delete(c);
        remove.push(c);
      } else {
        this.refs.set(c, n);
      }
    }
    tab.chunks = next;
    if (this.state === "live") {
      this.sendRuns("unsubscribe", remove);
      this.sendRuns("subscribe", add);
    }
  }

  sendRuns(type, chunks) {
    if (chunks.length === 0) return;
    for (const [first_chunk, count] of toRuns([...chunks].sort((a, b) => a - b))) {
      this.sendWs({ type, first_chunk, count });
    }
  }

  set(tabId, msg) {
    const tab = this.tabs.get(tabId);
    if (this.state !== "live") {
      tab.send({ t: "ack", id: msg.id, status: "disconnected", seq: 0 });
      return;
    }
    const req = this.takeReq();
    this.inflight.set(req, { tab: tabId, id: msg.id });
    try {
      this.sendWs({ type: "set", request_id: req, index: msg.index, checked: !!msg.checked });
    } catch {
      this.inflight.delete(req);
      tab.send({ t: "ack", id: msg.id, status: "invalid", seq: 0 });
    }
  }

  takeReq() {
    const req = this.nextReq;
    this.nextReq = this.nextReq >= 0xffffffff ? 1 : this.nextReq + 1;
    return req;
  }

  /** Several clicks of tab `tabId` as SetMany messages (a lone box as a Set). */
  sets(tabId, list) {
    const tab = this.tabs.get(tabId);
    if (this.state !== "live") {
      for (const s of list) tab.send({ t: "ack", id: s.id, status: "disconnected", seq: 0 });
      return;
    }
    const byIndex = new Map();
    for (const s of list) {
      const b = byIndex.get(s.index) ?? { index: s.index, ids: [] };
      b.checked = !!s.checked;
      b.ids.push(s.id);
      byIndex.set(s.index, b);
    }
    const boxes = [...byIndex.values()].sort((a, b) => a.index - b.index);
    for (let i = 0; i < boxes.length; i += MAX_SETS_PER_MESSAGE) {
      const part = boxes.slice(i, i + MAX_SETS_PER_MESSAGE);
      if (part.length === 1 && part[0].ids.length === 1) {
        this.set(tabId, { id: part[0].ids[0], index: part[0].index, checked: part[0].checked });
        continue;
      }
      const req = this.takeReq();
      const v = { tab: tabId, boxes: part };
      this.inflight.set(req, v);
      try {
        this.sendWs(setMany(req, part));
      } catch {
        this.inflight.delete(req);
        this.answer(v, () => ({ status: "invalid", seq: 0 }));
      }
    }
  }

  /** Answers every id of in-flight record `v`: `outcome(k)` for its k-th box. */
  answer(v, outcome) {
    const tab = this.tabs.get(v.tab);
    if (!v.boxes) {
      const o = outcome(0);
      tab?.send({ t: "ack", id: v.id, status: o.status, seq: o.seq });
      return;
    }
    v.boxes.forEach((b, k) => {
      const o = outcome(k);
      for (const id of b.ids) tab?.send({ t: "ack", id, status: o.status, seq: o.seq });
    });
  }

  statusMsg() {
    return {
      t: "status", state: this.state, endpoint: this.endpoint, endpoints: this.endpoints, hello: this.hello, gen: this.gen,
    };
  }

  sendStatusTo(id) {
    this.tabs.get(id)?.send(this.statusMsg());
  }

  broadcast(msg) {
    for (const tab of this.tabs.values()) tab.send(msg);
  }

  setState(state) {
    this.state = state;
    this.broadcast(this.statusMsg());
  }

  /** Periodic: drop silent tabs, ping the gateway. */
  tick() {
    const cutoff = this.d.now() - TAB_TIMEOUT_MS;
    for (const [id, tab] of this.tabs) if (tab.seen < cutoff) this.removeTab(id);
    if (this.state === "live" && this.d.now() - (this.lastPing ?? 0) > PING_INTERVAL_MS) {
      this.lastPing = this.d.now();
      this.sendWs({ type: "ping", nonce: Math.floor(this.d.random() * 0xffffffff) >>> 0 });
    }
  }

  // ------------------------------------------------------------ the socket

  sendWs(msg) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(encodeClient(msg));
  }

  /** The endpoint list from /config.json; keeps the last good list when the fetch fails. */
  async loadEndpoints() {
    let config = null;
    try {
      // A retry asks past every cache: the list may have changed.
      config = await this.d.fetchConfig(this.attempt > 0);
    } catch {
      config = null;
    }
    if (!config && this.endpoints) return this.endpoints;
    const list = endpointsFromConfig(config);
    const out = [];
    for (const e of list) {
      try {
        out.push(resolveEndpoint(e, this.d.base));
      } catch {
        /* skip a malformed entry */
      }
    }
    return out.length ? out : [resolveEndpoint("/ws", this.d.base)];
  }

  /** Opens up to two candidates, keeps the better, or schedules a retry. */
  async connect() {
    if (this.closed || this.connecting) return;
    this.connecting = true;
    this.retryTimer = null;
    this.setState(this.everLive ? "reconnecting" : "connecting");
    if (!this.endpoints || this.attempt > 0) this.endpoints = await this.loadEndpoints();
    const now = this.d.now();
    for (const [u, until] of this.avoid) if (until < now) this.avoid.delete(u);
    // A returning browser first tries the gateway it used last time alone
    // (one handshake instead of two); a failure races two as usual.
    const hinted = this.attempt === 0 && !this.everLive && this.hint
      && this.endpoints.includes(this.hint) && !this.avoid.has(this.hint);
    const urls = hinted ? [this.hint] : pickTwo(this.endpoints, new Set(this.avoid.keys()), this.d.random);
    this.hint = null;
    const chosen = await this.race(urls);
    this.connecting = false;
    if (this.closed) {
      chosen?.ws.close(1000);
      return;
    }
    if (!chosen) return this.scheduleRetry();
    this.adopt(chosen);
  }

  /** Resolves with the best candidate (or null) within CHOOSE_TIMEOUT_MS. */
  race(urls) {
    return new Promise((resolve) => {
      const cands = [];
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        this.d.clearTimeout(timer);
        const best = bestCandidate(cands.filter((c) => !c.failed));
        for (const c of cands) {
          if (c !== best) {
            c.detach();
            // Closing a socket still connecting logs an error in Chrome: wait for it to open.
            if (c.ws.readyState === 0) c.ws.onopen = () => c.ws.close(1000);
            else try { c.ws.close(1000); } catch { /* already closed */ }
          }
        }
        resolve(best);
      };
      const check = () => {
        if (cands.every((c) => c.failed || (c.hello && c.rtt != null))) finish();
      };
      const timer = this.d.setTimeout(finish, CHOOSE_TIMEOUT_MS);
      for (const url of urls) {
        let ws;
        try {
          ws = this.d.createSocket(url);
        } catch {
          this.avoidUrl(url);
          continue;
        }
        ws.binaryType = "arraybuffer";
        const c = { url, ws, hello: null, load: null, rtt: null, failed: false, early: [], nonce: 0, sentAt: 0 };
        c.detach = () => { ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null; };
        ws.onopen = () => {
          c.nonce = Math.floor(this.d.random() * 0xffffffff) >>> 0;
          c.sentAt = this.d.now();
          ws.send(encodeClient({ type: "ping", nonce: c.nonce }));
        };
        ws.onmessage = (ev) => {
          // Another protocol version: not this page's gateway (checked
          // before decoding, whose layout may differ).
          const version = helloVersion(ev.data);
          if (version !== null && version !== PROTOCOL_VERSION) { c.failed = true; ws.close(1000); return check(); }
          let m;
          try { m = decodeServer(ev.data); } catch { c.failed = true; ws.close(1002); return check(); }
          if (m.type === "hello") {
            c.hello = m;
            c.load = m.load;
          } else if (m.type === "pong" && m.nonce === c.nonce && c.rtt == null) {
            c.rtt = this.d.now() - c.sentAt;
          } else {
            c.early.push(m);
          }
          check();
        };
        ws.onerror = () => {};
        ws.onclose = (ev) => {
          c.failed = true;
          if (closeMeansAvoid(ev?.code ?? 1006)) this.avoidUrl(url);
          check();
        };
        cands.push(c);
      }
      if (cands.length === 0) finish();
    });
  }

  avoidUrl(url) {
    this.avoid.set(url, this.d.now() + AVOID_MS);
  }

  adopt(c) {
    const ws = c.ws;
    this.ws = ws;
    this.endpoint = c.url;
    this.hello = c.hello;
    this.attempt = 0;
    this.gen++;
    this.everLive = true;
    this.lastPing = this.d.now();
    ws.onmessage = (ev) => {
      let m;
      try { m = decodeServer(ev.data); } catch { ws.close(1002); return; }
      this.onServer(m);
    };
    ws.onclose = (ev) => this.onClose(ws, ev?.code ?? 1006);
    ws.onerror = () => {};
    this.state = "live";
    this.sendRuns("subscribe", [...this.refs.keys()]);
    this.broadcast(this.statusMsg());
    for (const m of c.early) this.onServer(m);
  }

  onServer(m) {
    switch (m.type) {
      case "update":
        for (const tab of this.tabs.values()) if (tab.chunks.has(m.chunk)) tab.send({ t: "server", m });
        break;
      case "versions":
        this.route(m, m.first_chunk, m.versions.length);
        break;
      case "resync":
        this.route(m, m.first_chunk, m.count);
        break;
      case "stats":
        this.lastStats = m;
        this.broadcast({ t: "server", m });
        break;
      case "ack": {
        const v = this.inflight.get(m.request_id);
        if (!v || v.boxes) break;
        this.inflight.delete(m.request_id);
        this.answer(v, () => m);
        break;
      }
      case "ack_many": {
        const v = this.inflight.get(m.request_id);
        if (!v?.boxes) break;
        this.inflight.delete(m.request_id);
        // Runs cover the boxes in the SetMany's (ascending) order; a box
        // the gateway left out (a bug) is answered "invalid" (rolled back).
        const outcomes = ackManyOutcomes(m);
        this.answer(v, (k) => outcomes[k] ?? { status: "invalid", seq: 0 });
        break;
      }
      case "hello":
        this.hello = m;
        this.broadcast(this.statusMsg());
        break;
      default:
        break;
    }
  }

  /** Sends a range message to tabs holding any chunk of first .. first+count-1. */
  route(m, first, count) {
    for (const tab of this.tabs.values()) {
      let wants = false;
      if (count > tab.chunks.size) {
        for (const c of tab.chunks) if (c >= first && c < first + count) { wants = true; break; }
      } else {
        for (let c = first; c < first + count; c++) if (tab.chunks.has(c)) { wants = true; break; }
      }
      if (wants) tab.send({ t: "server", m });
    }
  }

  onClose(ws, code) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (closeMeansAvoid(code) && this.endpoint) this.avoidUrl(this.endpoint);
    for (const v of this.inflight.values()) this.answer(v, () => ({ status: "disconnected", seq: 0 }));
    this.inflight.clear();
    if (this.closed) return;
    this.setState("reconnecting");
    this.scheduleRetry();
  }

  scheduleRetry() {
    if (this.closed || this.retryTimer) return;
    const delay = backoffDelay(this.attempt, this.d.random);
    this.attempt++;
    if (this.state !== "reconnecting" && this.state !== "connecting") this.setState("reconnecting");
    this.retryTimer = this.d.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  /** Reconnects now (e.g. the browser came back online). */
  kick() {
    if (this.ws || this.connecting) return;
    if (this.retryTimer) this.d.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt = 0;
    this.connect();
  }

  /** Stops everything (the leader tab is going away). */
  shutdown() {
    this.closed = true;
    this.d.clearInterval(this.pingTimer);
    if (this.retryTimer) this.d.clearTimeout(this.retryTimer);
    if (this.ws) {
      try { this.ws.close(1000); } catch { /* ignore */ }
    }
  }
}
