// checkraft's service worker: caching only (it cannot own a WebSocket and
// is stopped when idle; the socket lives in socket-worker.js or a tab).
// - the shell's version and files: `node assets/build.mjs` writes
//   dist/sw.js, this file minified with the version (a digest of every
//   served file) and the shell's files (the page's bundles) set in front
//   of it; it also writes /sw-version.js (the version alone), imported
//   here when this source file is served (no dist/: the modules are the
//   shell). A changed file changes the version, which makes the browser
//   install this worker again under a new cache name. Without a build the
//   version is "dev";
// - install: precache the app shell. The first install takes the files
//   the page has just loaded from the HTTP cache (no second download);
//   an update revalidates them. Files in the lazy list (the built hub,
//   which only a browser without SharedWorker loads) are cached when first
//   fetched;
// - shell files, navigations and /config.json: from the cache when built
//   (a repeat visit costs no request for them), else network first; the
//   cache when offline. A `reload` request (the hub's retry) for
//   /config.json goes to the network and refreshes the cache;
// - GET /api/chunks/{c} on this origin: straight to the network (a page's
//   If-None-Match 304 reaches the page untouched); every 200 body is also
//   stored, keyed by URL, in the chunk cache the page itself writes
//   (offline.js);
// - /ws, /nojs*, /metrics and anything cross-origin (the page's reads
//   routed to a gateway, routes.js): not intercepted.

if (typeof self.CHECKRAFT_SHELL_VERSION !== "string") {
  try {
    importScripts("/sw-version.js");
  } catch {
    /* not built: "dev" */
  }
}
const VERSION = typeof self.CHECKRAFT_SHELL_VERSION === "string" ? self.CHECKRAFT_SHELL_VERSION : "dev";
const BUILT = VERSION !== "dev";
const SHELL_CACHE = `checkraft-shell-${VERSION}`;
const CHUNK_CACHE = "checkraft-chunks-v1";
/** The source modules: the shell without a bundle. */
const MODULES = [
  "/js/main.js",
  "/js/protocol.js",
  "/js/state.js",
  "/js/viewplan.js",
  "/js/grid.js",
  "/js/minimap.js",
  "/js/chunks.js",
  "/js/offline.js",
  "/js/connection.js",
  "/js/hub.js",
  "/js/endpoints.js",
  "/js/routes.js",
  "/js/overview.js",
  "/js/subscriptions.js",
  "/js/page-state.js",
  "/js/header.js",
  "/js/jump.js",
  "/js/ssr.js",
  "/js/socket-worker.js",
];
const SHELL = Array.isArray(self.CHECKRAFT_SHELL) ? self.CHECKRAFT_SHELL : ["/", "/css/app.css", ...MODULES];
const LAZY = Array.isArray(self.CHECKRAFT_LAZY) ? self.CHECKRAFT_LAZY : [];
const OPTIONAL = ["/config.json"];

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    const first = !names.some((n) => n.startsWith("checkraft-shell-"));
    // Right after the first page load the HTTP cache holds exactly these.
    const mode = first ? "force-cache" : "no-cache";
    const cache = await caches.open(SHELL_CACHE);
    await cache.addAll(SHELL.map((url) => new Request(url, { cache: mode })));
    await Promise.all(OPTIONAL.map(async (url) => {
      try {
        const res = await fetch(url, { cache: mode });
        if (res.ok) await cache.put(url, res);
      } catch {
        /* optional: the page falls back to ["/ws"] */
      }
    }));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("checkraft-shell-") && name !== SHELL_CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

function bypass(url) {
  return url.pathname === "/ws" || url.pathname.startsWith("/nojs") || url.pathname === "/metrics";
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin || bypass(url)) return;
  if (url.pathname.startsWith("/api/chunks/")) {
    event.respondWith(chunk(req));
  } else if (url.pathname.startsWith("/api/")) {
    return; // stats, overview and box reads: the network only
  } else if (req.mode === "navigate" || SHELL.includes(url.pathname) || LAZY.includes(url.pathname)
    || OPTIONAL.includes(url.pathname)) {
    const fresh = req.cache === "reload" || req.cache === "no-store";
    const page = req.mode !== "navigate" || url.pathname === "/" || url.pathname === "/index.html";
    event.respondWith(BUILT && !fresh && page ? cacheFirst(req, url) : networkFirst(req, url));
  }
});

async function chunk(req) {
  const res = await fetch(req);
  if (res.status === 200) {
    const copy = res.clone();
    caches.open(CHUNK_CACHE).then((c) => c.put(req.url, copy)).catch(() => {});
  }
  return res;
}

/** The cache key of a shell request (a navigation's query is ignored). */
function keyOf(req, url) {
  return url.pathname;
}

async function cacheFirst(req, url) {
  const cache = await caches.open(SHELL_CACHE);
  const hit = await cache.match(keyOf(req, url));
  return hit ?? networkFirst(req, url);
}

async function networkFirst(req, url) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const res = await fetch(req);
    if (res.ok && (req.mode !== "navigate" || url.pathname === "/" || url.pathname === "/index.html")) {
      cache.put(req.mode === "navigate" ? url.pathname : req, res.clone()).catch(() => {});
    }
    return res;
  } catch (err) {
    const hit = (await cache.match(req, { ignoreSearch: req.mode === "navigate" }))
      ?? (req.mode === "navigate" ? await cache.match("/") : undefined);
    if (hit) return hit;
    throw err;
  }
}
