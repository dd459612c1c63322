// Pure HTTP routing: where the page sends its chunk and API reads.
//
// The socket hub picks a gateway by measured latency and reported load
// (endpoints.js); its HTTP reads should go there too, instead of through
// the page's origin (Caddy). A gateway's HTTP base comes from its
// WebSocket URL (ws://h:p/ws → http://h:p, wss: → https:). The order to
// try, best first: the hub's gateway, the other gateways, then the page's
// own origin (""), leaving out bases that failed within FAIL_MS (they go
// last, before the origin, when everything failed). The origin is always
// in the list: it is the fallback that needs no CORS.
//
// `Routes` keeps the little state this needs (the hub's choice, the
// endpoint list, recent failures); the decisions are the exported pure
// functions, and time is passed in so tests are deterministic.

/** How long a failed base stays at the back of the line (ms). */
export const FAIL_MS = 15_000;

/**
 * The HTTP base of a gateway's WebSocket URL: its scheme (http/https) and
 * host, and the path before its last segment ("/ws" → ""). "" when the URL
 * is the page's own origin (reads then stay same-origin) or unusable.
 * @param {string} wsUrl absolute ws: or wss: URL
 * @param {string} origin the page's origin, e.g. "http://127.0.0.1:8080"
 */
export function httpBase(wsUrl, origin) {
  let url;
  try {
    url = new URL(wsUrl);
  } catch {
    return "";
  }
  if (url.protocol === "ws:") url.protocol = "http:";
  else if (url.protocol === "wss:") url.protocol = "https:";
  else return "";
  const path = url.pathname.replace(/\/[^/]*$/, "");
  const base = `${url.origin}${path}`;
  return url.origin === origin && path === "" ? "" : base;
}

/**
 * The bases to try for a read, best first (see the module comment).
 * @param {{preferred: string|null, endpoints: string[], origin: string,
 *   failed: Map<string, number>, now: number}} s
 *   `preferred` and `endpoints` are WebSocket URLs; `failed` maps a base
 *   to when it last failed.
 * @returns {string[]} distinct bases, "" (the origin) last
 */
export function orderBases({ preferred, endpoints, origin, failed, now }) {
  const fresh = [];
  const stale = [];
  const seen = new Set([""]);
  const add = (ws) => {
    const base = httpBase(ws, origin);
    if (seen.has(base)) return;
    seen.add(base);
    const at = failed.get(base);
    (at !== undefined && now - at < FAIL_MS ? stale : fresh).push(base);
  };
  if (preferred) add(preferred);
  for (const e of endpoints) add(e);
  return [...fresh, ...stale, ""];
}

/** The routing state of one page. */
export class Routes {
  /** @param {string} origin @param {() => number} now */
  constructor(origin, now = () => Date.now()) {
    this.origin = origin;
    this.now = now;
    this.preferred = null;
    this.endpoints = [];
    this.failed = new Map();
    this.blocked = new Set();
  }

  /** Never use `base` again: the page's CSP forbids it (a front that does
   * not list the gateways in `connect-src`). */
  block(base) {
    if (base !== "") this.blocked.add(base);
  }

  /** The hub's current gateway and endpoint list (WebSocket URLs). */
  update(preferred, endpoints) {
    if (preferred) this.preferred = preferred;
    if (Array.isArray(endpoints) && endpoints.length > 0) this.endpoints = endpoints;
  }

  /** The bases to try now, best first. */
  order() {
    return orderBases({
      preferred: this.preferred,
      endpoints: this.endpoints,
      origin: this.origin,
      failed: this.failed,
      now: this.now(),
    }).filter((b) => !this.blocked.has(b));
  }

  /** A read to `base` failed (network error or 5xx). */
  fail(base) {
    if (base !== "") this.failed.set(base, this.now());
  }

  /** A read to `base` succeeded. */
  ok(base) {
    this.failed.delete(base);
  }
}

/**
 * Fetch options for a read at `base`: the page's origin keeps the caller's
 * hand-set If-None-Match (a 304 reaches the page); another origin gets a
 * plain CORS GET (no preflight) revalidated by the browser's HTTP cache
 * (`no-cache`: its stored ETag goes out, a 304 comes back as the stored
 * 200), so no custom header is sent.
 * @param {string} base
 * @param {Record<string, string>} headers the same-origin headers
 */
export function readOptions(base, headers = {}) {
  return base === ""
    ? { headers, cache: "no-store" }
    : { mode: "cors", credentials: "omit", cache: "no-cache" };
}
