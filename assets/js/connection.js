// The tab's link to the socket hub, in one of three modes:
// - "shared-worker": the hub runs in socket-worker.js, one per origin;
// - "web-locks": one tab, elected with navigator.locks, runs the hub and
//   serves the other tabs over a BroadcastChannel; when it goes away the
//   lock passes to another tab, which announces itself and gets every
//   tab's state again;
// - "per-tab": the hub runs in this tab (no sharing possible).
// The link remembers the tab's last subscription so it can replay it to a
// new hub, and sends a heartbeat and a goodbye on pagehide.
// `?socket=web-locks|per-tab|shared-worker` in the page URL forces a mode (tests).

// The hub's code loads only where the hub runs (in the SharedWorker, the
// leader tab or a lone tab): a tab of a SharedWorker browser never fetches it.
const loadHub = () => import("./hub.js").then((m) => m.Hub);

export const HEARTBEAT_MS = 5_000;
/** Where the page remembers the gateway its socket last used. */
export const ENDPOINT_KEY = "checkraft:endpoint";

function lastEndpoint() {
  try {
    return localStorage.getItem(ENDPOINT_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

function hubDeps() {
  return {
    createSocket: (url) => new WebSocket(url),
    // The Service Worker answers a plain request from its cache; `fresh`
    // (a reconnect) goes to the network.
    fetchConfig: async (fresh) => {
      const r = await fetch("/config.json", { cache: fresh ? "reload" : "no-cache" });
      return r.ok ? r.json() : null;
    },
    base: location.href,
  };
}

function tabId() {
  return globalThis.crypto?.randomUUID?.() ?? `tab-${Math.random().toString(36).slice(2)}`;
}

/** The socket mode this browser supports (or the one forced by `?socket=`). */
export function chooseMode() {
  const forced = new URLSearchParams(location.search).get("socket");
  const hasShared = typeof SharedWorker === "function";
  const hasLocks = !!navigator.locks?.request && typeof BroadcastChannel === "function";
  if (forced === "per-tab") return "per-tab";
  if (forced === "web-locks" && hasLocks) return "web-locks";
  if (hasShared && forced !== "web-locks") return "shared-worker";
  if (hasLocks) return "web-locks";
  return "per-tab";
}

/**
 * Opens the link.
 * @param {(msg: object) => void} onMessage receives hub -> tab messages
 * @param {(mode: string) => void} onMode told the mode (again if it falls back)
 * @returns {{send(msg: object): void, subscribe(chunks: number[]): void, kick(): void}}
 */
export function openLink(onMessage, onMode) {
  let lastSub = [];
  let transport = null;
  const id = tabId();

  const resend = () => {
    transport.send({ t: "hello", last: lastEndpoint() });
    transport.send({ t: "sub", chunks: lastSub });
  };

  const start = (mode) => {
    onMode(mode);
    if (mode === "shared-worker") transport = sharedWorker(onMessage, () => start("per-tab"));
    else if (mode === "web-locks") transport = webLocks(id, onMessage, resend);
    else transport = perTab(id, onMessage);
    resend();
  };
  start(chooseMode());

  setInterval(() => transport.send({ t: "beat", chunks: lastSub }), HEARTBEAT_MS);
  addEventListener("pagehide", () => transport.send({ t: "bye" }));
  addEventListener("pageshow", (e) => { if (e.persisted) resend(); });

  return {
    send: (msg) => transport.send(msg),
    subscribe(chunks) {
      lastSub = [...chunks];
      transport.send({ t: "sub", chunks: lastSub });
    },
    kick: () => transport.send({ t: "kick" }),
  };
}

function sharedWorker(onMessage, fallback) {
  let failed = false;
  const worker = new SharedWorker("/js/socket-worker.js", { type: "module", name: "checkraft" });
  worker.port.onmessage = (ev) => { if (!failed) onMessage(ev.data); };
  worker.onerror = () => {
    if (failed) return;
    failed = true;
    fallback();
  };
  worker.port.start();
  return { send: (m) => { if (!failed) worker.port.postMessage(m); } };
}

function perTab(id, onMessage) {
  let hub = null;
  const queue = [];
  loadHub().then((Hub) => {
    hub = new Hub(hubDeps());
    addEventListener("pagehide", (e) => { if (!e.persisted) hub.shutdown(); });
    hub.tabMessages(id, queue.splice(0), onMessage);
  });
  return { send: (m) => (hub ? hub.tabMessage(id, m, onMessage) : queue.push(m)) };
}

function webLocks(id, onMessage, resend) {
  const channel = new BroadcastChannel("checkraft-hub");
  let hub = null;
  channel.onmessage = (ev) => {
    const d = ev.data;
    if (!d || typeof d !== "object") return;
    if (d.to === "hub") {
      if (hub) hub.tabMessage(d.from, d.msg, (m) => channel.postMessage({ to: d.from, msg: m }));
    } else if (d.to === "*" && d.msg?.t === "leader") {
      if (!hub) resend();
    } else if (d.to === id) {
      onMessage(d.msg);
    }
  };
  navigator.locks.request("checkraft-socket", async () => {
    const Hub = await loadHub();
    hub = new Hub(hubDeps());
    addEventListener("pagehide", (e) => { if (!e.persisted) hub.shutdown(); });
    resend();
    channel.postMessage({ to: "*", msg: { t: "leader" } });
    await new Promise(() => {}); // hold the lock for the tab's lifetime
  });
  return {
    send(m) {
      if (hub) hub.tabMessage(id, m, onMessage);
      else channel.postMessage({ to: "hub", from: id, msg: m });
    },
  };
}
