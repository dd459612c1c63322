// The SharedWorker that owns the browser's one WebSocket for every tab of
// this origin. Each connecting tab gets a port; the shared Hub (hub.js)
// does the rest. SharedWorker ports have no close event, so tabs say "bye"
// on pagehide and the hub drops tabs whose heartbeat stops.

import { Hub } from "./hub.js";

const hub = new Hub({
  createSocket: (url) => new WebSocket(url),
  // The Service Worker answers a plain request from its cache; `fresh` (a
  // reconnect) goes to the network.
  fetchConfig: async (fresh) => {
    const r = await fetch("/config.json", { cache: fresh ? "reload" : "no-cache" });
    return r.ok ? r.json() : null;
  },
  base: self.location.href,
});

let nextTab = 1;

self.onconnect = (event) => {
  const port = event.ports[0];
  const id = `port-${nextTab++}`;
  const send = (m) => port.postMessage(m);
  port.onmessage = (ev) => hub.tabMessage(id, ev.data, send);
  port.start();
};
